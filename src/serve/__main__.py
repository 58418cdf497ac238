"""Run the `botclick` command line as `python -m src.serve ...` (same commands as the console script)."""

from src.cli import app

if __name__ == "__main__":
    app(prog_name="botclick")
