fn main() {
    println!("{}", protector::config::schema::schema_text());
}
