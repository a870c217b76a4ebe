"""Files in and out: reading CT volumes and writing results (`images`), named maps on one grid (`maps`), where
an image's voxels lie (`grid`), atomic writes (`atomic`) and fast gzip (`gzip_files`). No PyTorch."""
