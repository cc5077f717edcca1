"""One router per resource: runs, prediction, the live stream, and the page."""
