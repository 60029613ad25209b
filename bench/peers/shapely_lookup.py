"""Point -> polygon lookups with shapely's STRtree (PyPI `shapely`), the same polygons and points
as `zs-bench grid-lookup` (read from the file it writes). Uses shapely 2's vectorised bulk query,
its fastest path. Prints lookups/s."""
import json
import sys
import time

import numpy as np
import shapely

doc = json.load(open(sys.argv[1]))
polys = np.array([shapely.Polygon(r) for r in doc["polygons"]])
pts = shapely.points(np.array(doc["points"]))
t = time.perf_counter()
tree = shapely.STRtree(polys)
build = time.perf_counter() - t
tree.query(pts[:10000], predicate="within")  # warm up
t = time.perf_counter()
pairs = tree.query(pts, predicate="within")
secs = time.perf_counter() - t
print(f"shapely {shapely.__version__} STRtree: {len(polys)} polygons, built in {build*1e3:.0f} ms; "
      f"{len(pts)} lookups ({len(np.unique(pairs[0]))} inside) in {secs:.3f} s = {len(pts) / secs:.0f} lookups/s")
