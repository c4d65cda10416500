"""In-memory frames for SAM2's video predictor against the sam2 package's own JPEG-folder route."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from video3d_fakes import moving_phantom

from mskseg_lib.video3d import prompts as P
from mskseg_lib.video3d.frames import VolumeFrames, read_jpeg_frames, write_jpeg_frames
from mskseg_lib.video3d.predictor import (
    build_tiny_video_predictor,
    choose_offload,
    init_state_from_frames,
    state_bytes,
)
from mskseg_lib.video3d.propagate import run_video, run_video_from_jpeg


@pytest.fixture(scope="module")
def predictor():
    return build_tiny_video_predictor()


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A non-square phantom (rows != cols) written as the package's JPEG folder."""
    image, labels = moving_phantom(n_slices=9, size=56)
    image, labels = image[:, :, 4:52], labels[:, :, 4:52]  # 56 x 48 slices
    folder = tmp_path_factory.mktemp("jpeg")
    paths = write_jpeg_frames(image, folder)
    return image, labels, folder, paths


def test_frames_equal_the_jpeg_route_for_the_same_pixels(predictor, volume):
    from sam2.utils.misc import load_video_frames

    image, _, folder, paths = volume
    assert [p.name for p in paths][:2] == ["00000.jpg", "00001.jpg"]
    seen = read_jpeg_frames(paths)  # what the JPEG route sees (lossy)
    assert 0 < np.abs(seen.astype(int) - image).max() <= 40  # JPEG changes the pixels...
    theirs, h, w = load_video_frames(str(folder), predictor.image_size, offload_video_to_cpu=True,
                                     compute_device=torch.device("cpu"))
    ours = VolumeFrames(seen, predictor.image_size)
    assert (ours.video_height, ours.video_width) == (h, w) == (56, 48)
    assert len(ours) == len(theirs) == 9
    for k in range(9):
        torch.testing.assert_close(ours[k], theirs[k], rtol=0, atol=0)  # ...the arithmetic is the same


def test_state_has_the_packages_keys(predictor, volume):
    _, _, folder, _ = volume
    theirs = predictor.init_state(str(folder), offload_video_to_cpu=True)
    ours = init_state_from_frames(predictor, VolumeFrames(volume[0], predictor.image_size))
    assert set(ours) == set(theirs)
    assert ours["video_height"] == theirs["video_height"] and ours["num_frames"] == theirs["num_frames"]


def test_masks_equal_the_jpeg_route_on_the_same_model(predictor, volume):
    image, labels, folder, paths = volume
    seeds = P.single_slice_prompts(labels, [1, 2], negatives=True)
    jpeg = run_video_from_jpeg(predictor, folder, seeds)
    memory = run_video(predictor, read_jpeg_frames(paths), seeds)
    assert jpeg.labels.shape == (9, 56, 48)
    assert (jpeg.labels > 0).any()  # something was segmented, so equality is not trivially of empties
    np.testing.assert_array_equal(memory.labels, jpeg.labels)
    # from the volume itself (no JPEG loss) the frames differ slightly, the plumbing does not
    direct = run_video(predictor, image, seeds)
    assert direct.labels.shape == jpeg.labels.shape


def test_frames_refuse_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        VolumeFrames(np.zeros((3, 8, 8), np.float32), 32)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        VolumeFrames(np.zeros((8, 8), np.uint8), 32)
    frames = VolumeFrames(np.zeros((2, 8, 8), np.uint8), 32)
    with pytest.raises(IndexError):
        frames[2]


def test_frames_must_match_the_model_size(predictor):
    with pytest.raises(ValueError, match="frames are 128 px but the predictor takes 256 px"):
        init_state_from_frames(predictor, VolumeFrames(np.zeros((2, 8, 8), np.uint8), 128))


def test_offload_choice():
    cpu = torch.device("cpu")
    assert choose_offload("auto", cpu, 160, 3, 1024) is False
    assert choose_offload("always", cpu, 1, 1, 256) is True
    assert choose_offload("never", torch.device("cuda"), 10_000, 9, 1024) is False
    with pytest.raises(ValueError, match="auto, always or never"):
        choose_offload("sometimes", cpu, 1, 1, 256)
    # 160 frames x 3 objects at 1024 px: 160*3*4096 grid px * 592 bytes, about 1.2 GB
    assert state_bytes(160, 3, 1024) == 160 * 3 * 64 * 64 * 4 * (64 + 64 + 16 + 4)
