// Runs the browser end-to-end tests (node:test files given as arguments) and ends with a
// libtest-style "test result:" line, which scripts/test.sh counts in its summary.
import { run } from "node:test";
import { spec } from "node:test/reporters";

const files = process.argv.slice(2);
let passed = 0;
let failed = 0;
let skipped = 0;
const stream = run({ files, concurrency: 1 });
stream.on("test:pass", (t) => {
  if (t.nesting === 0) t.skip ? skipped++ : passed++;
});
stream.on("test:fail", (t) => {
  if (t.nesting === 0) failed++;
});
stream.compose(spec).pipe(process.stdout);
stream.on("close", () => {
  const status = failed || passed === 0 ? "FAILED" : "ok";
  console.log(`\ntest result: ${status}. ${passed} passed; ${failed} failed; ${skipped} ignored`);
  process.exitCode = status === "ok" ? 0 : 1;
});
