# One image for the API, the workers and Flower; compose picks the command.
# TORCH_BUILD names the PyTorch wheel index torch comes from: `cpu` (the default) or a CUDA
# build such as cu126, cu128 or cu130 (https://download.pytorch.org/whl/<TORCH_BUILD>; it must
# carry torch 2.13.0 and suit the host's NVIDIA driver). The pin torch==2.13.0 in pyproject.toml
# is then satisfied by the build installed here, so `pip install .` keeps it.
FROM python:3.11-slim
ARG TORCH_BUILD=cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 FEWSHOT_DATA_DIR=/data \
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin fewshot \
    && mkdir /data && chown fewshot:fewshot /data
WORKDIR /app
RUN pip install torch==2.13.0 --index-url "https://download.pytorch.org/whl/${TORCH_BUILD}"
COPY pyproject.toml README.md ./
COPY models ./models
COPY store ./store
COPY workers ./workers
COPY service ./service
COPY cli ./cli
COPY client ./client
RUN pip install . flower
COPY docker/init.sh /usr/local/bin/fewshot-init
# A named volume mounted on /data starts as a copy of this folder, owned by fewshot.
VOLUME /data
USER fewshot
EXPOSE 8000
CMD ["fewshot", "api", "--host", "0.0.0.0", "--port", "8000"]
