"""Regenerate the bundled object catalogue from a folder of OMA registry DDF files.

    python tools/gen_catalogue.py /path/to/lwm2m-registry [--output FILE]

Reads every ``*.xml`` in the folder, keeps the objects the catalogue is meant
to hold (LwM2M core, IPSO, uCIFI), drops all description text, and writes
``src/lwm2m/model/catalogue.json``. The output depends only on the input
files, so running it twice gives the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lwm2m.model.catalogue import CATALOGUE_FILE, dump_catalogue, in_catalogue
from lwm2m.model.ddf import DDFError, load_ddf_dir

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "src" / "lwm2m" / "model" / CATALOGUE_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("registry", type=Path, help="folder holding the registry's <ObjectID>.xml files")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default: {DEFAULT_OUTPUT}")
    args = parser.parse_args(argv)
    try:
        definitions = [d for d in load_ddf_dir(args.registry, descriptions=False) if in_catalogue(d.id)]
    except DDFError as exc:
        print(f"gen_catalogue: {exc}", file=sys.stderr)
        return 1
    text = dump_catalogue(definitions)
    args.output.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {len(definitions)} objects to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
