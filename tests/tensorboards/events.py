"""Real TensorBoard event files for the tests (torch's SummaryWriter, which writes with the
`tensorboard` package)."""


def write_scalars(folder, tag="loss", values=(1.0, 0.5, 0.25)):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(folder)
    for step, value in enumerate(values):
        writer.add_scalar(tag, value, step)
    writer.close()
    return list(values)
