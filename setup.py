from setuptools import find_packages, setup

setup(
    name="landscape-toolkit",
    version="0.1.0",
    description="Loss-landscape analysis and flat-minima trainers (ERM, SAM, ASAM, AMP, DAMP) for PyTorch",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["landscape*", "trainers*", "apps*", "data*"]),
    install_requires=[
        "torch>=2.4",
        "numpy",
        "scipy",
        "h5py",
        "matplotlib",
        "plotly",
        "dash",
        "tqdm",
        "scikit-learn",
    ],
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["landscape=apps.cli.__main__:main"]},
)
