"""Validate JSON documents against a JSON Schema with the `jsonschema` package (the reference
Python implementation), as gpugate's tests do: `validate.py SCHEMA DOC...`. The schema is first
checked against its own metaschema (the draft its `$schema` names); every error of every document
is printed with its path, and the exit code is 1 when any document is invalid, 0 otherwise."""

import json
import sys

import jsonschema


def main(schema_path, doc_paths):
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    failed = False
    for path in doc_paths:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            failed = True
            where = "/".join(str(p) for p in error.absolute_path)
            print(f"{path}: /{where}: {error.message}")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: validate.py SCHEMA DOC...")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
