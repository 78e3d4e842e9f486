// Validates YAML files against a JSON schema with Ajv 8 (its default class: draft-07, default options),
// for tests/schema-validators.sh: prints "FILE valid" or "FILE invalid: reason" per file; exit
// 2 if the schema itself does not compile. Usage: node ajv-validate.js SCHEMA FILE...
const Ajv = require("ajv");
const yaml = require("js-yaml");
const fs = require("fs");
const schema = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
// Default options; its strict-mode notes on union types go to stderr, as Ajv writes them.
const ajv = new Ajv({ logger: { log() {}, warn: (m) => console.error(m), error: console.error } });
let validate;
try {
  validate = ajv.compile(schema);
} catch (e) {
  console.log("schema refused: " + e.message);
  process.exit(2);
}
for (const file of process.argv.slice(3)) {
  const ok = validate(yaml.load(fs.readFileSync(file, "utf8")));
  console.log(file + " " + (ok ? "valid" : "invalid: " + ajv.errorsText(validate.errors)));
}
