"""Installs tff_movierec and the top-level `tasks` package (no Bazel, no WORKSPACE).

Dependencies are pinned in requirements.txt and installed by `make install`;
tensorflow-federated is installed with --no-deps (its jaxlib pin is unavailable).
"""
import setuptools

setuptools.setup(
    name="tff_movierec",
    version="0.1.0",
    description=(
        "Federated movie recommendation on MovieLens-1M with TensorFlow Federated"
    ),
    packages=setuptools.find_packages(include=["tff_movierec*", "tasks*"]),
    py_modules=["run_experiment"],
    python_requires=">=3.9,<3.12",
    install_requires=[],  # see requirements.txt; installed by the Makefile
    entry_points={
        "console_scripts": [
            "tff-movierec=run_experiment:entry_point",
            "tff-movierec-worker=tff_movierec.worker:main",
        ],
    },
)
