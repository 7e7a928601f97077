# syntax=docker/dockerfile:1
# The operator's one image definition. Users build it with `docker build .`;
# `make image` builds it with buildah and runs it on the local node. BASE is any
# Debian-based image with Python 3.11+ and its venv module: python:3.12-slim-bookworm
# by default; `make image` passes a Debian root made with debootstrap (on a machine that
# can pull no image). Two stages: no pip and no build files in the final image.
ARG BASE=python:3.12-slim-bookworm

FROM ${BASE} AS build
WORKDIR /src
RUN python3 -m venv /opt/dualstack
COPY pyproject.toml README.md ./
COPY operator ./operator
# Behind a TLS-intercepting proxy, pass its CA for this step only (nothing is kept):
#   --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=secret,id=ca-certificates,required=false \
    if [ -f /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
    && /opt/dualstack/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/dualstack/bin/pip uninstall --yes --quiet pip setuptools

FROM ${BASE}
ENV PATH=/opt/dualstack/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# (Debian has a group "operator" already: ours is "dualstack".)
RUN groupadd --system --gid 65532 dualstack \
    && useradd --system --uid 65532 --gid dualstack --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin dualstack
COPY --from=build /opt/dualstack /opt/dualstack
USER 65532:65532
EXPOSE 8080 8081 9443
ENTRYPOINT ["dualstack-operator"]
CMD ["run"]
