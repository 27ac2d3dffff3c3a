# cartd built from source, on Debian like our CI machines.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cartd

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 cartd
COPY --from=build /src/target/release/cartd /usr/local/bin/cartd
USER cartd
EXPOSE 8080
ENV CART__HTTP__ADDR=0.0.0.0:8080
ENTRYPOINT ["/usr/local/bin/cartd"]
