"""The grid engine: planned runs with status and ``--only`` selection (:mod:`~mcmi.grid.plan`),
the runs a grid is made of (:mod:`~mcmi.grid.builder`: teacher, MCMI fine-tune, preparation,
students), one scheduler over in-process, local and SLURM executors
(:mod:`~mcmi.grid.scheduler`, :mod:`~mcmi.grid.executors`), experiments as declarations
(:mod:`~mcmi.grid.experiment`) and their one command line (:mod:`~mcmi.grid.command`)."""
