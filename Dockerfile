# syntax=docker/dockerfile:1
# Build: make docker-build (needs a Docker engine).
FROM golang:1.26 AS build
WORKDIR /src
# Modules in their own layer: code changes do not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/podbridge ./cmd/podbridge

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/podbridge /podbridge
USER 65532:65532
ENTRYPOINT ["/podbridge"]
