"""The project's research tools: what the commands of ``project.yml`` run to
write the files in ``results/``. They live in the repository, not in the
spacy-spert wheel.

Each module holds one tool's logic; :mod:`research.cli` exposes each as a
command (``python -m research COMMAND``, from the repository root):

* :mod:`.datasets`: convert every SpERT JSON file of a dataset folder
  (``convert-dataset``).
* :mod:`.benchmark`: train with the paper protocol, score and time inference;
  write a results file (``benchmark``).
* :mod:`.kfold`: k-fold cross-validation (``kfold``).
* :mod:`.speed`: speed and memory against the transformer alone (``speed``).
* :mod:`.ablation`: the SpERT.MT ablation table from results files
  (``ablation-table``).
* :mod:`.demo` and :mod:`.demo_data`: tag held-out sentences (``demo``) and
  write the offline demo corpus (``demo-data``).
* :mod:`.records`: what every results file records (command, versions,
  machine) and the line under its tables; :mod:`.runs`: the ``spacy train``,
  ``spacy_spert evaluate`` and worker runs in fresh processes;
  :mod:`.measure`: timing and peak memory; :mod:`.steps`: a training step in
  the parts the tools time; :mod:`.options`: the options commands share.

Score names come from :data:`spacy_spert.pipeline.scorer.SCORE_NAMES`. matplotlib
(the ``bench`` extra) is imported only to draw the speed plot.
"""
