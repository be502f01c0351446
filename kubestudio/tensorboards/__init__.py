"""TensorBoards on users' log folders (issue 14, in progress): the folders a board shows and the
local backend that runs TensorBoard for it. The service (API, proxy, culling, page, SDK) builds
on these."""
