"""How hard the bench's nearest-neighbour problem is: the queries' relative contrast.

    python scripts/bench/index_contrast.py DIR

Reads DIR/vectors.f32 and DIR/queries.f32 (unit vectors, 512 floats a row;
see crates/clip-index/examples/bench.rs) and prints, averaged over the
queries, the L2 distance to the 10th nearest vector over that to the 1st,
and the mean distance to all vectors over that to the 1st. Near 1, the
neighbours are all but a tie and a search must see most of a cluster.
Needs numpy only (the venv index.sh installs has it).
"""

import sys

import numpy as np

DIM, K = 512, 10


def main():
    directory = sys.argv[1]
    vectors = np.fromfile(f"{directory}/vectors.f32", dtype="<f4").reshape(-1, DIM)
    queries = np.fromfile(f"{directory}/queries.f32", dtype="<f4").reshape(-1, DIM)
    cosines = queries @ vectors.T
    distances = np.sqrt(np.maximum(2 - 2 * cosines, 0))
    nearest = np.sort(np.partition(distances, K, axis=1)[:, :K], axis=1)
    print(f"{len(vectors)} vectors, {len(queries)} queries: "
          f"d{K} / d1 {(nearest[:, K - 1] / nearest[:, 0]).mean():.4f}, "
          f"mean distance / d1 {(distances.mean(axis=1) / nearest[:, 0]).mean():.3f}, "
          f"cosine to the 1st {(1 - nearest[:, 0] ** 2 / 2).mean():.3f}, "
          f"to the {K}th {(1 - nearest[:, K - 1] ** 2 / 2).mean():.3f}")


if __name__ == "__main__":
    main()
