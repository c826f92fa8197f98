"""``python -m lmlab ...`` (and ``torchrun --nproc-per-node N -m lmlab run STUDY ...``)."""

from lmlab.cli import main

if __name__ == "__main__":
    main()
