// Reads the vectors `test_media --blurhash-vectors` prints on stdin (name w h cx cy hash rgb-hex,
// one per line), encodes the same pixels with the npm blurhash package and prints one
// "ok"/"not ok" line per vector. Exits 1 when any hash differs.
"use strict";
const { encode } = require("blurhash");

const lines = require("fs").readFileSync(0, "utf8").split("\n").filter((l) => l.length > 0);
let bad = 0;
for (const line of lines) {
  const [name, w, h, cx, cy, hash, hex] = line.split(" ");
  const width = Number(w), height = Number(h);
  const rgb = Buffer.from(hex || "", "hex");
  if (hash === "error" || rgb.length !== width * height * 3) {
    console.log(`not ok - ${name}: malformed vector`);
    bad++;
    continue;
  }
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba[i * 4] = rgb[i * 3];
    rgba[i * 4 + 1] = rgb[i * 3 + 1];
    rgba[i * 4 + 2] = rgb[i * 3 + 2];
    rgba[i * 4 + 3] = 255;
  }
  const want = encode(rgba, width, height, Number(cx), Number(cy));
  const what = `${name} ${width}x${height} ${cx}x${cy}`;
  if (want === hash) {
    console.log(`ok - ${what} ${hash}`);
  } else {
    console.log(`not ok - ${what}: C ${hash}, npm ${want}`);
    bad++;
  }
}
if (lines.length === 0) {
  console.log("not ok - no vectors");
  bad++;
}
process.exit(bad ? 1 : 0);
