"""`python -m bench.worker module:function '{"param": ...}'`: one measurement in its own process."""

from __future__ import annotations

import importlib
import json
import logging
import sys


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    target, params = sys.argv[1], json.loads(sys.argv[2])
    module_name, _, function_name = target.partition(":")
    function = getattr(importlib.import_module(f"bench.{module_name}"), function_name)
    result = function(**params)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
