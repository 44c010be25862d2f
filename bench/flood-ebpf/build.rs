// Rebuild the object when a different bpf-linker is installed: it decides the output.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
