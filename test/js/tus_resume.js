// Resumes an upload with tus-js-client (npm), the way a browser or Node client would:
// uploadUrl is the slot's PUT URL, so the client starts with HEAD and continues with PATCH.
// Usage: node tus_resume.js <file> <slot PUT URL>
const fs = require('fs');
const tus = require('tus-js-client');

const [file, url] = process.argv.slice(2);
const size = fs.statSync(file).size;
const upload = new tus.Upload(fs.createReadStream(file), {
  uploadUrl: url,
  uploadSize: size,
  chunkSize: 4 * 1024 * 1024,
  retryDelays: [0, 200, 500],
  onError: (err) => { console.error('tus error: ' + err); process.exit(1); },
  onSuccess: () => { console.log('tus done ' + size); process.exit(0); },
});
upload.start();
