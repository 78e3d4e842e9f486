#!/usr/bin/env bash
# The published schema under a validator protector does not use (Python's jsonschema,
# Draft 2020-12, with check_schema and its regex and format checks): the schema itself must
# be accepted; every shipped example must validate, as `protector check --file-only` accepts
# it; every file of tests/schema-corpus must be refused by protector check, and the validator
# must agree with the verdict its first line gives (`# schema: invalid`, or `# schema: valid`
# for the rules only check knows, listed there with why). Run by .ci/run; installs python3's
# jsonschema and yaml with apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[schema $(date +%T)] $*"; }

if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
    say "installing python3-jsonschema python3-yaml"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-jsonschema python3-yaml >/dev/null
fi
cargo build -q
protector=target/debug/protector

validate() { # FILE... -> "FILE valid|invalid: reason" per file
    python3 - "$@" <<'PY'
import json, sys, yaml, jsonschema
schema = json.load(open("schema/protector.schema.json"))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
for path in sys.argv[1:]:
    errors = list(validator.iter_errors(yaml.safe_load(open(path))))
    print(path, "valid" if not errors else "invalid: " + errors[0].message.replace("\n", " "))
PY
}

failed=0
examples=(examples/*.yaml examples/packaging/protector.yaml)
while read -r file verdict rest; do
    if [ "$verdict" != valid ]; then
        say "FAIL: $file: an example the schema refuses: $verdict $rest"; failed=1
    fi
done < <(validate "${examples[@]}")
for file in "${examples[@]}"; do
    "$protector" check --file-only --quiet "$file" >/dev/null ||
        { say "FAIL: $file: protector check refuses a shipped example"; failed=1; }
done
say "${#examples[@]} examples: valid under the schema and for protector check"

corpus=(tests/schema-corpus/*.yaml)
while read -r file verdict rest; do
    expected=$(sed -n '1s/^# schema: \([a-z]*\).*/\1/p' "$file")
    got=${verdict%:}
    if [ "$got" != "$expected" ]; then
        say "FAIL: $file: the validator says $verdict $rest; expected $expected"; failed=1
    fi
    if "$protector" check --file-only "$file" >/dev/null 2>&1; then
        say "FAIL: $file: protector check accepts it"; failed=1
    fi
    [ "$expected" = valid ] && say "by design, only check refuses: $(sed -n '1s/^# schema: valid *//p' "$file")"
done < <(validate "${corpus[@]}")
[ "$failed" = 0 ] || exit 1
say "PASS: ${#corpus[@]} bad configs refused by protector check; the validator agrees on every rule the schema carries"
