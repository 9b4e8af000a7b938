# One image for the API and the workers; compose picks the command.
# CPU by default; for GPU workers build with
#   --build-arg TORCH_INDEX=<PyTorch's CUDA wheel index for your CUDA version>
FROM python:3.11-slim
ARG TORCH_INDEX=
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 FEWSHOT_DATA_DIR=/data \
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
WORKDIR /app
RUN if [ -n "$TORCH_INDEX" ]; then pip install torch==2.13.0 --index-url "$TORCH_INDEX"; \
    else pip install torch==2.13.0; fi
COPY pyproject.toml README.md ./
COPY models ./models
COPY store ./store
COPY workers ./workers
COPY service ./service
COPY cli ./cli
COPY client ./client
RUN pip install . flower
VOLUME /data
EXPOSE 8000
CMD ["fewshot", "api", "--host", "0.0.0.0", "--port", "8000"]
