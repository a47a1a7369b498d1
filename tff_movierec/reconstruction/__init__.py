"""Cross-device Federated Reconstruction: user embeddings never leave the client."""

from tff_movierec.reconstruction.client_datasets import (
    UserDatasets, evaluation_datasets, split_fn, training_datasets)
from tff_movierec.reconstruction.evaluation import evaluate
from tff_movierec.reconstruction.model import MFConfig, build_reconstruction_model
from tff_movierec.reconstruction.process import (
    ReconConfig, build_evaluation_process, build_training_process, model_fn_for)
