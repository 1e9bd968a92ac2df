"""How a study's cells reach workers: inline, local processes, a Slurm cluster (submitit) or a Ray cluster.

A cell is one run folder: whichever launcher trains it, the folder's lock keeps a second worker off it, and the
folder itself is what resumes after a kill or a preemption."""
