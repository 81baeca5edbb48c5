fn main() {
    // sqlx::migrate! embeds the migration files at compile time but does not tell cargo about
    // them: without this line a new migration leaves a stale binary.
    println!("cargo:rerun-if-changed=../migrations");
}
