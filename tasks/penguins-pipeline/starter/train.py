"""Train a model of `sex` on /output/penguins_clean.csv; keep it under /workspace."""

import os

OUTPUT = os.environ.get("OUTPUT", "/output")
WORKSPACE = os.environ.get("WORKSPACE", "/workspace")


def main() -> None:
    # TODO: read the table clean.py wrote, train a model, save it in WORKSPACE.
    print(f"nothing trained yet (would read {OUTPUT}, write to {WORKSPACE})")


if __name__ == "__main__":
    main()
