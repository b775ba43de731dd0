"""Files as other writers leave them, for interop tests."""
import h5py
import numpy as np

from emdstream import Dim

SCAN_DIMS = [Dim("scan_y", "[nm]", scale=0.5), Dim("scan_x", "[nm]", scale=0.5, offset=2.0),
             Dim("k_y", "[1/nm]", scale=0.2), Dim("k_x", "[1/nm]", scale=0.2)]


def add_haadf(path, scan=(3, 5)):
    """A second stream as a multi-stream file has it: one value per scan position."""
    image = np.arange(scan[0] * scan[1], dtype=np.float32).reshape(scan)
    with h5py.File(path, "a") as f:
        g = f.create_group("data/haadf")
        g.attrs["emd_group_type"], g.attrs["frame_ndim"] = np.int32(1), 0
        g.create_dataset("data", data=image, chunks=(1, scan[1]), compression="gzip")
        for i, dim in enumerate(SCAN_DIMS[:2]):
            vec = g.create_dataset(f"dim{i + 1}", data=dim.vector(scan[i]))
            vec.attrs["name"], vec.attrs["units"] = dim.name, dim.units
    return image
