import numpy as np

from prmkit.baselines import length_features, random_features
from prmkit.records import Trajectory


def test_length_features_by_hand():
    t = Trajectory("q", ["a bc", "d"])
    # "a bc": 4 characters, 2 words; "d": 1 character, 1 word
    np.testing.assert_allclose(length_features([t])[0], np.log1p([[4, 2], [1, 1]]), rtol=1e-6)


def test_random_features_are_seeded_noise_of_the_right_shape():
    data = [Trajectory("q", ["a", "b", "c"]), Trajectory("q", ["d"])]
    a, b = random_features(data, 5, seed=3), random_features(data, 5, seed=3)
    assert [f.shape for f in a] == [(3, 5), (1, 5)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], random_features(data, 5, seed=4)[0])
