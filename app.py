#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth` / `deploy` / `destroy` run this."""

import sys

from stacks.app_builder import Application
from stacks.settings import SettingsError


def main() -> None:
    try:
        application = Application()
    except SettingsError as error:
        sys.exit(f"error: {error}")
    application.app.synth()


if __name__ == "__main__":
    main()
