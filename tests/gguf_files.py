"""Hand-written GGUF files for the tests of bad model sources: a header, one tensor, and the
metadata a test wants (architecture, chat template)."""

import numpy as np


def write_gguf(path, arch, chat_template=None):
    import gguf  # the gguf package: a test dependency, imported where a file is written

    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(1)
    if chat_template:
        writer.add_chat_template(chat_template)
    writer.add_tensor("token_embd.weight", np.ones((8, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
