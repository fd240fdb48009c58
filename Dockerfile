# kpoguard's container image: a static binary on distroless, non-root.
# Build with `make image` (needs a Docker engine; CI does not build it).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/kpoguard ./cmd/kpoguard

# gcr.io/distroless/static:nonroot, pinned by digest; refresh it with
# `crane digest gcr.io/distroless/static:nonroot` when you update.
FROM gcr.io/distroless/static:nonroot@sha256:e2e927ec666bae08560abb3c55d0659eceabb657f56b6782ab500a9fc7f555e3
COPY --from=build /out/kpoguard /kpoguard
USER 65532:65532
ENTRYPOINT ["/kpoguard"]
CMD ["serve"]
