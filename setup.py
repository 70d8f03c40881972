from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path("mlcls/__init__.py").read_text(), version)

setup(
    name="mlcls",
    version=version["__version__"],
    description="Multi-label image classification for imbalanced, non-exclusive labels (PyTorch)",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["mlcls", "mlcls.*"]),
    package_data={"mlcls.report": ["assets/*"]},  # the report page's template, script and style
    install_requires=[
        # ranges, not pins. The floors are tested: the whole suite passes on torch 2.3.1 +
        # torchvision 0.18.1 (torch.amp.GradScaler("cpu"), used by the trainer, needs torch 2.3);
        # CI runs torch 2.14.1 + torchvision 0.29.1.
        "torch>=2.3,<3",
        "torchvision>=0.18,<1",
        "timm>=0.9",
        "safetensors>=0.3",  # .safetensors weight files (timm needs it too)
        "pyyaml>=5.4",
        "tensorboard>=2.10",
        "pillow>=9.0",
        "tqdm>=4.60",
        "numpy>=1.22",
        "matplotlib>=3.5",  # plots, and the labelled image grids in TensorBoard
        "webdataset>=0.2.48",  # tar shards for data in object storage (tools/make_shards.py, WebDatasetShards)
        "iterative-stratification>=0.1.7",  # multi-label stratified hold-outs and folds (Sechidis et al. 2011); brings scikit-learn
        "cleanlab>=2.5",  # the label-error finder (tools/find_label_issues.py)
    ],
    extras_require={
        "tests": ["pytest>=7", "scikit-learn>=1.1", "onnx>=1.14", "onnxruntime>=1.15", "optuna>=3.6", "pytest-xdist>=3.5"],
        "sweep": ["optuna>=3.6"],
        "export": ["onnx>=1.14", "onnxruntime>=1.15"],
        "dev": ["ruff>=0.4"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
