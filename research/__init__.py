"""The project's experiment tools: what the commands of ``project.yml`` run.

Each module holds one tool's logic; ``spacy_spert.cli`` exposes each as a
command (``python -m spacy_spert COMMAND``, also ``python -m spacy spert
COMMAND``):

* :mod:`.datasets`: convert every SpERT JSON file of a dataset folder
  (``convert-dataset``).
* :mod:`.evaluation`: spaCy's evaluate with SpERT's score table (``evaluate``).
* :mod:`.benchmark`: train with the paper protocol, score and time inference;
  write a results file (``benchmark``).
* :mod:`.kfold`: k-fold cross-validation (``kfold``).
* :mod:`.speed`: speed and memory against the transformer alone (``speed``).
* :mod:`.ablation`: the SpERT.MT ablation table from results files
  (``ablation-table``).
* :mod:`.demo` and :mod:`.demo_data`: tag held-out sentences (``demo``) and
  write the offline demo corpus (``demo-data``).
* :mod:`.records`: what every results file records (command, versions);
  :mod:`.runs`: the ``spacy train`` and ``evaluate`` runs in fresh processes.

Score names come from :data:`spacy_spert.pipeline.scorer.SCORE_NAMES`. matplotlib
(the ``bench`` extra) is imported only to draw the speed plot.
"""
