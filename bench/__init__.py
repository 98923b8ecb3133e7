"""fanwire's end-to-end benchmark suite: `python -m bench --smoke | --quick | (full)`."""
