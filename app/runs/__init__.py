"""Runs, split by the data each part owns:

- `state`: a run's state (`RunState`) and the pure reducer `apply(message, run, at) -> run`;
- `table`: every run by id, and the live part of the active ones (feed, worker handle);
- `scheduler`: which queued run trains next, and the job its worker gets;
- `models`: the runs' model files and the active model;
- `presenter`: runs as the API's answer models (progress, ETA);
- `service`: `RunService`, what the routes call, with the side effects around the reducer;
- `errors`: what it refuses (404, 409).
"""
