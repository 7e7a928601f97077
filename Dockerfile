# syntax=docker/dockerfile:1
# Multi-stage: build the wheel with the full toolchain, install it into a slim
# runtime as a non-root user. No compilers in the final stage.
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir build==1.2.2 \
    && python -m build --wheel --outdir /wheels . \
    && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/dualstack_operator-*.whl

FROM python:3.12-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 65532 operator \
    && useradd --system --uid 65532 --gid operator --no-create-home --shell /usr/sbin/nologin operator
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels dualstack-operator==0.1.0 \
    && rm -rf /wheels
USER 65532:65532
EXPOSE 8080 8081 9443
ENTRYPOINT ["dualstack-operator"]
CMD ["run"]
