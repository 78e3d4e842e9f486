#!/usr/bin/env bash
# The published schema under three validators protector does not use: Python's jsonschema
# (the schema's draft, 07, with check_schema and its regex and format checks), check-jsonschema
# (the command line pre-commit users run) and Ajv 8 (Node.js, draft-07, default options). Each must accept the schema itself and every shipped
# example (as `protector check --file-only` does); every file of tests/schema-corpus must be
# refused by protector check, and each validator must agree with the verdict the file's first
# line gives (`# schema: invalid`, or `# schema: valid` for the rules only check knows,
# listed there with why). Run by .ci/run; installs jsonschema, PyYAML and check-jsonschema
# with pip, and Ajv and js-yaml with npm into target/, when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[schema $(date +%T)] $*"; }

if ! python3 -c 'import jsonschema, yaml' 2>/dev/null || ! python3 -c 'import check_jsonschema' 2>/dev/null; then
    say "installing jsonschema, PyYAML and check-jsonschema (pip)"
    python3 -m pip install -q jsonschema pyyaml check-jsonschema
fi
ajv_dir=target/schema-validators
if [ ! -d "$ajv_dir/node_modules/ajv" ]; then
    say "installing ajv@8 and js-yaml@4 (npm) into $ajv_dir"
    mkdir -p "$ajv_dir"
    npm install --silent --no-audit --no-fund --prefix "$ajv_dir" ajv@8 js-yaml@4 >/dev/null
fi
cargo build -q
protector=target/debug/protector

python_validate() { # FILE... -> "FILE valid" or "FILE invalid: reason", a line each
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

check_jsonschema_validate() { # one run per file: its exit status is the verdict
    local file
    for file in "$@"; do
        if out=$(python3 -m check_jsonschema --schemafile schema/protector.schema.json "$file" 2>&1); then
            echo "$file valid"
        else
            echo "$file invalid: $(echo "$out" | grep -m1 -v '^Schema validation errors' | tr -s ' ')"
        fi
    done
}

ajv_validate() {
    NODE_PATH="$ajv_dir/node_modules" node tests/support/ajv-validate.js \
        schema/protector.schema.json "$@" 2>/dev/null
}

failed=0
examples=(examples/*.yaml examples/packaging/protector.yaml)
corpus=(tests/schema-corpus/*.yaml)
for file in "${examples[@]}"; do
    "$protector" check --file-only --quiet "$file" >/dev/null ||
        { say "FAIL: $file: protector check refuses a shipped example"; failed=1; }
done
for file in "${corpus[@]}"; do
    if "$protector" check --file-only "$file" >/dev/null 2>&1; then
        say "FAIL: $file: protector check accepts it"; failed=1
    fi
    if grep -q '^# schema: valid' "$file"; then
        say "by design, only check refuses $(basename "$file"): $(sed -n '1s/^# schema: valid *//p' "$file")"
    fi
done
for validator in python check_jsonschema ajv; do
    out=$("${validator}_validate" "${examples[@]}" "${corpus[@]}") ||
        { say "FAIL: $validator: the schema itself is refused: $out"; failed=1; continue; }
    while read -r file verdict rest; do
        expected=valid
        case "$file" in tests/schema-corpus/*)
            expected=$(sed -n '1s/^# schema: \([a-z]*\).*/\1/p' "$file") ;;
        esac
        if [ "${verdict%:}" != "$expected" ]; then
            say "FAIL: $validator: $file: $verdict $rest (expected $expected)"; failed=1
        fi
    done <<<"$out"
    say "$validator: the schema compiles; ${#examples[@]} examples valid; ${#corpus[@]} bad configs judged as expected"
done
[ "$failed" = 0 ] || exit 1
say "PASS: protector check refuses every bad config; the validators agree on every rule the schema carries"
