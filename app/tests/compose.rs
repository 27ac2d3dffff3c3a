//! docker-compose.yml is valid (checked by `docker-compose config`, which needs
//! no Docker engine) and runs cartd on the real backend with what it needs.

use std::path::Path;
use std::process::Command;

#[test]
fn docker_compose_file_is_valid_and_wires_cartd_to_redis_and_postgres() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml");
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .arg("config")
        .output()
        .expect("docker-compose is installed (scripts/services.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "docker-compose config failed: {}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "CART__BACKEND: redis",
        "CART__REDIS__URL: redis://redis:6379",
        "CART__POSTGRES__URL: postgres://cartd:cartd@postgres:5432/cartd",
        "notify-keyspace-events",
        "Ex",
        "condition: service_healthy",
        "image: postgres:",
        "image: redis:",
    ] {
        assert!(stdout.contains(expected), "`{expected}` missing from:\n{stdout}");
    }
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile").exists(), "cartd is built by a Dockerfile");
}

#[test]
fn the_cluster_profile_has_six_cluster_nodes_and_three_cartd_instances_on_them() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml");
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .args(["--profile", "cluster", "config"])
        .output()
        .expect("docker-compose is installed (scripts/services.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "docker-compose config failed: {}", String::from_utf8_lossy(&out.stderr));
    let seeds = (1..=6).map(|n| format!("redis://redis-c{n}:6379")).collect::<Vec<_>>().join(",");
    assert_eq!(stdout.matches("--cluster-enabled").count(), 6, "six cluster nodes:\n{stdout}");
    assert_eq!(stdout.matches(&format!("CART__REDIS__CLUSTER_NODES: {seeds}")).count(), 3, "three cartd on them");
    for expected in ["--cluster-replicas 1", "condition: service_completed_successfully", "cluster_state:ok"] {
        assert!(stdout.contains(expected), "`{expected}` missing from:\n{stdout}");
    }
}
