"""The peer of clip-index's bench example: faiss's HNSW over the same vectors.

    python scripts/bench/index_faiss.py DIR [EF_CONSTRUCTION [M]]

Reads DIR/vectors.f32 and DIR/queries.f32 (written by `cargo run --release -p
clip-index --example bench -- data ITEMS DIR`), writes DIR/truth.u32 (each
query's 10 exact nearest neighbours by inner product, faiss's IndexFlatIP),
then builds IndexHNSWFlat(512, M) (M 16 unless given) with inner product on the unit vectors,
two threads, and reports its build time and recall@10 / search latency (one
thread) at several efSearch. Needs faiss-cpu and numpy only.
"""

import sys
import time

import faiss
import numpy as np

DIM, K = 512, 10
EF_SEARCH = [16, 32, 64, 128, 256, 512, 1024]


def main():
    directory = sys.argv[1]
    ef_construction = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    links = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    vectors = np.fromfile(f"{directory}/vectors.f32", dtype="<f4").reshape(-1, DIM)
    queries = np.fromfile(f"{directory}/queries.f32", dtype="<f4").reshape(-1, DIM)
    faiss.omp_set_num_threads(2)

    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    _, truth = exact.search(queries, K)
    truth.astype("<u4").tofile(f"{directory}/truth.u32")
    del exact

    index = faiss.IndexHNSWFlat(DIM, links, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    start, cpu = time.perf_counter(), time.process_time()
    index.add(vectors)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    n = len(vectors)
    print(f"faiss {faiss.__version__} IndexHNSWFlat(M={links}, efConstruction={ef_construction}), "
          f"2 threads: built {n} items in {wall:.1f} s ({cpu:.1f} CPU-s): "
          f"{n / wall:.0f} adds/s, {n / cpu:.0f} per CPU-second")

    faiss.omp_set_num_threads(1)
    print(f"search, one thread, {len(queries)} queries, limit {K}:")
    for ef in EF_SEARCH:
        index.hnsw.efSearch = ef
        latencies, found = [], 0
        for query, true in zip(queries, truth):
            start = time.perf_counter()
            _, ids = index.search(query[None, :], K)
            latencies.append(time.perf_counter() - start)
            found += len(set(ids[0]) & set(true))
        latencies.sort()
        print(f"  efSearch {ef:>3}: recall@{K} {found / truth.size:.3f}, "
              f"p50 {latencies[len(latencies) // 2] * 1e3:.3f} ms, "
              f"p99 {latencies[len(latencies) * 99 // 100] * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
