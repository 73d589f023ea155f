"""Analysis figures and tables of the paper, from trained checkpoints or run folders:

- :mod:`~mcmi.analysis.eigencam`: Eigen-CAM of MLL vs MCMI teachers (Fig. 3, Figs. 10-13)
- :mod:`~mcmi.analysis.tsne`: t-SNE of teachers' output probabilities (Fig. 6)
- :mod:`~mcmi.analysis.temperature`: CMI / LL / accuracy vs softmax temperature (Fig. 1, A.7)
- :mod:`~mcmi.analysis.curves`: CMI and LL per epoch from ``metrics.jsonl`` (Fig. 2)
- :mod:`~mcmi.analysis.per_class`: per-class CMI table (A.3)

Each module has an entry function writing its figure (PNG at 150 dpi and PDF) or table
atomically, and ``main(argv)`` for the command line. Submodules are imported on use (matplotlib
and scikit-learn load only then).
"""
