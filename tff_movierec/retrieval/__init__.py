"""TFRS two-tower retrieval and ranking, trained centrally or federated.

  config      frozen dataclasses: tower features/sizes, task options.
  examples    interaction frames -> per-example features (the user's other
              rated movies as history, demographics, the positive movie).
  towers      the query and candidate towers (functional Keras models).
  tasks       `tfrs.tasks.Retrieval` (in-batch softmax) and `tfrs.tasks.Ranking`.
  models      `tfrs.Model`s joining towers and task: retrieval and ranking.
  ranking     the ranking (rating) model's towers and features: biased,
              SVD++-like, the user side from the user's rated movies.
  federated   a `tff.learning.models.VariableModel` around a tfrs model's
              loss, and the FedAvg process built from it.
  evaluation  full-ranking evaluation of global weights on the server.
  export      SavedModels of the towers and a BruteForce index, plus a JSON
              movie vocabulary; loading them without this package.
  training    centralized and federated training loops with a per-round
              callback.
  experiment  `run_experiment`: load data, train, evaluate, export in one
              call (for run_experiment.py and bench/retrieval.py).
"""
