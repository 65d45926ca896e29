#!/usr/bin/env python3
"""CDK entry point: ``npx cdk synth -c stageName=feat-x -c ssmStageName=dev``.

Context:
  stageName      the stage (default ``dev``); every resource name carries it
  ssmStageName   the stage whose SSM parameters to use (default: stageName)
  retainData     keep tables/bucket/logs on delete (default: only for ``prod``)
  webOrigins     extra CORS origins, comma separated (e.g. http://localhost:5173)
  powertoolsLayerVersion  version of the public Powertools layer
"""

from __future__ import annotations

import sys
from pathlib import Path

# Runnable from a checkout without installing the infra package: put this
# folder (and, for a bare checkout, the two code packages) on the path.
_HERE = Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / "client", _HERE.parent / "handlers"):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))

from aws_cdk import App  # noqa: E402

from iotnotify_infra import build_app  # noqa: E402


def main() -> None:
    app = App()
    build_app(app)
    app.synth()


if __name__ == "__main__":
    main()
