use mongodb::bson::{doc, Bson, Decimal128};
#[tokio::test]
async fn explore() {
    let c = mongodb::Client::with_uri_str("mongodb://127.0.0.1:1800").await.unwrap();
    let admin = c.database("admin");
    println!("hello {:?}", admin.run_command(doc!{"hello":1}).await);
    println!("buildinfo {:?}", admin.run_command(doc!{"buildInfo":1}).await);
    let db = c.database("explore_x");
    let d: Decimal128 = "12.50".parse().unwrap();
    let r = db.run_command(doc!{"update":"t","updates":[{"q":{"_id":1},"u":{"_id":1,"d":d},"upsert":true}],"ordered":false}).await;
    println!("dec {:?}", r);
    let r = db.run_command(doc!{"update":"t","updates":[{"q":{"_id":2},"u":{"_id":2,"a":[[1,2],[3]]},"upsert":true}, {"q":{"_id":3},"u":{"_id":3,"a":"x"},"upsert":true}],"ordered":false}).await;
    println!("nested {:?}", r);
    let r = db.run_command(doc!{"update":"t","updates":[{"q":{"_id":4},"u":{"_id":4,"a":{"$x":1, "a.b":2}},"upsert":true}],"ordered":false}).await;
    println!("dollar {:?}", r);
    let r = db.run_command(doc!{"update":"t","updates":[{"q":{"_id":{"a":1,"b":"x"}},"u":{"_id":{"a":1,"b":"x"},"v":Bson::Null, "s":"a\u{0}b"},"upsert":true}],"ordered":false}).await;
    println!("nul {:?}", r);
    let r = db.run_command(doc!{"delete":"t","deletes":[{"q":{"_id":1},"limit":1},{"q":{"_id":99},"limit":1}],"ordered":false}).await;
    println!("del {:?}", r);
    let r = db.run_command(doc!{"create":"t"}).await;
    println!("create existing {:?}", r);
    db.drop().await.unwrap();
    let r = mongodb::Client::with_uri_str("mongodb://127.0.0.1:6379/?serverSelectionTimeoutMS=2000").await.unwrap().database("admin").run_command(doc!{"hello":1}).await;
    println!("redis {:?}", r);
}
