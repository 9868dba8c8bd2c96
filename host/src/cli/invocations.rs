//! `sluice invocations`: recent invocation records, through a running
//! host's admin API.

use anyhow::Result;

use super::Admin;

/// Which records.
#[derive(clap::Args)]
pub struct Args {
    /// Only this tenant's.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this function's.
    #[arg(long)]
    function: Option<String>,
    /// Show at most this many (1 to 1000).
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

/// Prints the records, as a table or JSON lines.
pub async fn run(admin: &Admin, args: Args, json: bool) -> Result<()> {
    let Args {
        tenant,
        function,
        limit,
    } = args;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &limit.to_string());
    if let Some(t) = &tenant {
        query.append_pair("tenant", t);
    }
    if let Some(f) = &function {
        query.append_pair("function", f);
    }
    let path = format!("/v1/invocations?{}", query.finish());
    let answer = admin.call(http::Method::GET, &path, None).await?;
    let rows = answer["invocations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if json {
        for row in &rows {
            println!("{row}");
        }
        return Ok(());
    }
    println!(
        "{:<36}  {:<20}  {:<32}  {:>6}  {:<12}  {:>10}",
        "REQUEST ID", "FUNCTION", "ROUTE", "STATUS", "OUTCOME", "DURATION"
    );
    for r in &rows {
        let function = format!(
            "{}/{}",
            r["tenant"].as_str().unwrap_or_default(),
            r["function"].as_str().unwrap_or_default()
        );
        let micros = r["duration_us"].as_i64().unwrap_or_default();
        println!(
            "{:<36}  {function:<20}  {:<32}  {:>6}  {:<12}  {:>8.1}ms",
            r["request_id"].as_str().unwrap_or_default(),
            r["route"].as_str().unwrap_or_default(),
            r["status"].as_i64().unwrap_or_default(),
            r["outcome"].as_str().unwrap_or_default(),
            micros as f64 / 1000.0,
        );
    }
    Ok(())
}
