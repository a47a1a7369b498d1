"""Cross-device matrix factorization: user factors never leave the client.

`exact` (the `movielens_recon` task) solves each user's factors in closed form
on its device; `process` (the `movielens_fedrecon` task) is TFF's Federated
Reconstruction, which reconstructs them with SGD steps.
"""

from tff_movierec.reconstruction.client_datasets import (
    UserDatasets, evaluation_datasets, split_fn, training_datasets)
from tff_movierec.reconstruction.evaluation import evaluate
from tff_movierec.reconstruction.model import MFConfig, build_reconstruction_model
from tff_movierec.reconstruction.process import (
    ReconConfig, build_evaluation_process, build_training_process, model_fn_for)
