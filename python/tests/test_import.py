import shmring


def test_version():
    assert shmring.__version__
