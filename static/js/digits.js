// 28x28 digit images as small canvases: the test digits of the evaluation, the first layer's
// weights, and a digit sent to the drawing area.

/** Paint 784 values into a 28x28 canvas through `toRgb(value) -> [r, g, b]`. */
export function imageCanvas(values, toRgb) {
  const canvas = document.createElement('canvas');
  canvas.width = 28;
  canvas.height = 28;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i += 1) {
    const [r, g, b] = toRgb(values[i]);
    image.data[i * 4] = r;
    image.data[i * 4 + 1] = g;
    image.data[i * 4 + 2] = b;
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

/** Grey levels 0..255 (white ink on black, as in MNIST). */
export const grey = (value) => [value, value, value];
