//! Benign traffic of a REST shop like OWASP Juice Shop: an Angular front end loading its
//! assets, socket.io long polling (`text/plain` bodies), a JSON API used with GET, POST, PUT,
//! PATCH and DELETE, logins, registrations, reviews and feedback in free text, searches with
//! quotes and apostrophes, URL-encoded unicode, multipart uploads, and API scripts and crawlers
//! with unusual but legitimate user agents. Nothing here is an attack.

use super::http::{ALNUM, BASE64URL, Request, Rng, encode, json_str};

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    // Odd but legitimate.
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.5) AppleWebKit/537.36 (KHTML, like Gecko) 85.0.4183.93/6.5 TV Safari/537.36",
    "Mozilla/5.0 (PlayStation; PlayStation 5/8.20) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 [FBAN/EMA;FBLC/en_US;FBAV/444.0.0.0.110;]",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 339.0.3.12.91 (iPhone14,5; iOS 17_5; de_DE; de-DE; scale=3.00; 1170x2532; 617766010)",
    "Lynx/2.9.0dev.12 libwww-FM/2.14 SSL-MM/1.4.1 GNUTLS/3.7.8",
    "Mozilla/5.0 (Windows NT 6.1; Trident/7.0; rv:11.0) like Gecko",
    "Mozilla/5.0 (X11; Linux aarch64; rv:128.0) Gecko/20100101 Firefox/128.0 Waterfox/6.5.0",
];

const LANGUAGES: &[(&str, &str)] = &[
    ("en", "en-US,en;q=0.9"),
    ("de_DE", "de-DE,de;q=0.9,en;q=0.6"),
    ("fr_FR", "fr-FR,fr;q=0.8,en-US;q=0.5,en;q=0.3"),
    ("es_ES", "es-ES,es;q=0.9"),
    ("ja_JP", "ja-JP,ja;q=0.9,en;q=0.7"),
    ("tr_TR", "tr-TR,tr;q=0.9"),
    ("pt_BR", "pt-BR,pt;q=0.9,en;q=0.5"),
    ("zh_CN", "zh-CN,zh;q=0.9"),
];

const FIRST: &[&str] = &[
    "Zoë",
    "Liam",
    "Amélie",
    "Noah",
    "Siobhán",
    "Mateo",
    "Aiko",
    "Oğuz",
    "Björn",
    "Chloé",
    "Declan",
    "Priya",
    "José",
    "Małgorzata",
    "Søren",
    "Yusuf",
    "Hannah",
    "Renée",
    "Kwame",
    "Ines",
];
const LAST: &[&str] = &[
    "O'Brien",
    "Müller",
    "D'Angelo",
    "Nguyen",
    "Smith-Jones",
    "García",
    "Ångström",
    "Kowalski",
    "van der Berg",
    "Yılmaz",
    "O'Connell",
    "Tanaka",
    "MacDonald",
    "Dubois",
    "Ó Súilleabháin",
];

/// What shoppers type into the search box.
const SEARCHES: &[&str] = &[
    "apple",
    "apple juice",
    "\"apple juice\"",
    "banana",
    "lemon",
    "o'neill",
    "kid's t-shirt",
    "100% orange",
    "green smoothie",
    "owasp",
    "juice shop sticker",
    "Äpfel",
    "Grünkohl",
    "café",
    "mélange",
    "ジュース",
    "сок",
    "果汁",
    "strawberry & cream",
    "carrot + ginger",
    "t-shirt (XL)",
    "hoodie size: L",
    "\"raspberry\" OR \"strawberry\"",
    "mug",
    "1000ml",
    "c# developer shirt",
    "don't panic towel",
    "50% off",
    "eggfruit",
    "fruit press",
];

/// Product reviews: what people write, punctuation and all.
const REVIEWS: &[&str] = &[
    "Bought two boxes; cat was very curious about the smell but we loved it!",
    "Great gift for a new user (first order) of the shop, arrived in 2 days.",
    "Union Jack tee: select your usual size from the chart, it fits like the ones from my local shop.",
    "Tastes like fresh apples. 5/5 would order again :)",
    "Too sweet for me... my kids love it though <3",
    "Arrived warm, but still good. Delivery guy said it's \"normal\" in summer.",
    "Best juice ever!!! Worth every penny.",
    "It's OK. Not great, not terrible.",
    "I'd say 4/5 -- the bottle is hard to open.",
    "Perfect with ice & a slice of lemon.",
    "Ordered the 1000ml version, got 500ml. Customer service fixed it within a day, thanks!",
    "My grandma's recipe is better, but this comes close.",
    "Tried it with gin & tonic: 10/10.",
    "Label says 'no sugar added', tastes like there is. Still good.",
    "Works as a hangover cure. Don't ask how I know.",
    "Stickers are high quality, survived the dishwasher on my laptop lid (long story).",
    "The hoodie runs small, order one size up if you're between sizes.",
    "Sehr lecker! Würde ich wieder kaufen.",
    "Très bon jus, un peu cher mais ça vaut le coup.",
    "¡Muy rico! Lo recomiendo.",
    "おいしいです。また買います。",
    "Bought it for my husband; he drinks it every morning before running 10k.",
    "Not a fan of the new bottle design, the old one was easier to hold.",
    "Fast shipping. Packaging: 3 layers of bubble wrap, bottle intact.",
    "Exactly what the description says. Nothing more, nothing less.",
    "Is it vegan? The page doesn't say. Tastes great anyway.",
    "Got the wrong flavour (banana instead of melon), return was easy.",
    "We ordered 12 for our office; everyone wants more.",
    "The mug is huge — perfect for Monday mornings.",
    "Solid 3 stars. Price/quality ratio could be better.",
    "Honestly the best thing I've bought online this year.",
    "If you're in doubt, just try it: you won't regret it.",
    "Shirt faded after 5 washes at 40°C.",
    "Gave it to my neighbours' kids, they drank the whole thing in 5 minutes.",
    "Smells like a fruit market in July.",
    // Ordinary sentences some PL1 rules take for commands or SQL.
    "Union Jack tee - select the size from the chart, it's true to size.",
    "Time to order again, we ran out in a week.",
    "Python & Java devs will love the mug, it holds a lot of coffee.",
    "Type of juice: apple; find it in the fruit section of the menu.",
    "Curl up with a glass and a good book, that's my Sunday.",
    "Echo of the old recipe, but sweeter.",
    "Perfect for a new user (first order) like me: cheap shipping.",
];

const FEEDBACK: &[&str] = &[
    "Love the shop, but the search could be smarter (e.g. typo tolerance).",
    "Please add PayPal as a payment option!",
    "Your delivery to Austria takes too long; 9 days last time.",
    "The dark mode is great. Thank you!",
    "Can't change my address after ordering, please fix.",
    "Checkout failed twice with 'unknown error', worked the third time.",
    "Nice selection, fair prices, friendly support.",
    "Site is slow on my phone (3G) in the evenings.",
    "Why do I need to solve a captcha for feedback? :-/",
    "Merci pour le service rapide !",
    "Please ship to Switzerland too.",
    "The chatbot told me a joke instead of my order status. Funny, but...",
    "Time to say thanks: great service!",
    "Select products from the same seller should ship together.",
];

const CHATBOT: &[&str] = &[
    "hi",
    "What's your name?",
    "can I have a coupon?",
    "where is my order?",
    "what is your return policy",
    "Do you ship to Canada?",
    "I'd like to talk to a human, please.",
    "thanks, bye",
    "is there a discount for a new user (first order)?",
    "time to delivery for Germany?",
];

const PASSWORDS: &[&str] = &[
    "correct horse battery staple",
    "Tr0ub4dor&3",
    "P@ssw0rd!2024",
    "ilovejuice",
    "S3cure#Pass(word)",
    "h3ll0-w0rld_99",
    "Zürich2026!",
    "my dog's name is Rex",
];

const STREETS: &[&str] = &[
    "12 O'Connell St., Apt. 4",
    "Hauptstraße 5a",
    "221B Baker Street",
    "1600 Amphitheatre Pkwy; Building 40",
    "Rue de l'Église 17",
    "C/ Mayor, 3 - 2º izq.",
    "PO Box 1234 (c/o Smith)",
];

const PRODUCTS: &[(u32, &str)] = &[
    (1, "apple_juice.jpg"),
    (2, "orange_juice.jpg"),
    (3, "eggfruit_juice.jpg"),
    (4, "raspberry_juice.jpg"),
    (5, "lemon_juice.jpg"),
    (6, "banana_juice.jpg"),
    (7, "fan_shop.jpg"),
    (9, "fan_girlie.jpg"),
    (20, "melon_bike.jpeg"),
    (24, "sticker.png"),
    (29, "permafrost.jpg"),
    (33, "3d_keychain.jpg"),
    (35, "fruit_press.jpg"),
];

const ASSETS: &[&str] = &[
    "/runtime.js",
    "/polyfills.js",
    "/vendor.js",
    "/main.js",
    "/styles.css",
    "/assets/public/favicon_js.ico",
    "/assets/public/images/JuiceShop_Logo.png",
];

/// A client that is not a browser: an integration script or a crawler.
const API_CLIENTS: &[&str] = &[
    "curl/8.5.0",
    "python-requests/2.32.3",
    "okhttp/4.12.0",
    "PostmanRuntime/7.42.0",
    "Go-http-client/2.0",
    "axios/1.7.7",
];
const CRAWLERS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; DuckDuckBot-Https/1.1; https://duckduckgo.com/duckduckbot)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
];

/// One simulated browser session's state.
struct Browser<'r> {
    rng: &'r mut Rng,
    ua: &'static str,
    lang: (&'static str, &'static str),
    email: String,
    token: Option<String>,
    basket: u32,
    sid: String,
    out: Vec<Request>,
}

impl Browser<'_> {
    fn cookies(&self) -> String {
        let mut c = format!(
            "language={}; welcomebanner_status=dismiss; cookieconsent_status=dismiss",
            self.lang.0
        );
        if let Some(t) = &self.token {
            c.push_str(&format!("; token={t}"));
        }
        c
    }

    fn page(&mut self, target: &str, accept: &str) {
        let r = Request::new("GET", target)
            .header("User-Agent", self.ua)
            .header("Accept", accept)
            .header("Accept-Language", self.lang.1)
            .header("Accept-Encoding", "gzip, deflate, br")
            .header("Referer", "http://shop.example/")
            .header("Cookie", &self.cookies());
        self.out.push(r);
    }

    fn api(&mut self, method: &str, target: &str, json: Option<&str>) {
        let mut r = Request::new(method, target)
            .header("User-Agent", self.ua)
            .header("Accept", "application/json, text/plain, */*")
            .header("Accept-Language", self.lang.1)
            .header("Origin", "http://shop.example")
            .header("Referer", "http://shop.example/")
            .header("Cookie", &self.cookies());
        if let Some(t) = &self.token {
            r = r.header("Authorization", &format!("Bearer {t}"));
        }
        if let Some(body) = json {
            r = r.json(body);
        }
        self.out.push(r);
    }

    fn socket_io(&mut self) {
        let t = self.rng.token(ALNUM, 7);
        self.page(&format!("/socket.io/?EIO=4&transport=polling&t={t}"), "*/*");
        let t = self.rng.token(ALNUM, 7);
        let sid = self.sid.clone();
        let r = Request::new(
            "POST",
            &format!("/socket.io/?EIO=4&transport=polling&t={t}&sid={sid}"),
        )
        .header("User-Agent", self.ua)
        .header("Accept", "*/*")
        .header("Origin", "http://shop.example")
        .header("Cookie", &self.cookies())
        .body("text/plain;charset=UTF-8", "40");
        self.out.push(r);
        let t = self.rng.token(ALNUM, 7);
        self.page(
            &format!("/socket.io/?EIO=4&transport=polling&t={t}&sid={sid}"),
            "*/*",
        );
    }

    fn landing(&mut self) {
        self.page(
            "/",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        );
        for a in ASSETS {
            self.page(a, "*/*");
        }
        let lang = self.lang.0;
        self.page(&format!("/assets/i18n/{lang}.json"), "application/json");
        for api in [
            "/rest/admin/application-version",
            "/rest/admin/application-configuration",
            "/rest/languages",
            "/api/Challenges/?name=Score%20Board",
            "/api/Quantitys/",
            "/rest/products/search?q=",
        ] {
            self.api("GET", api, None);
        }
        self.socket_io();
        for _ in 0..3 {
            let (_, img) = *self.rng.pick(PRODUCTS);
            self.page(
                &format!("/assets/public/images/products/{img}"),
                "image/avif,image/webp,*/*",
            );
        }
    }

    fn search(&mut self) {
        let q = *self.rng.pick(SEARCHES);
        self.api(
            "GET",
            &format!("/rest/products/search?q={}", encode(q)),
            None,
        );
    }

    fn view_product(&mut self) {
        let (id, _) = *self.rng.pick(PRODUCTS);
        self.api(
            "GET",
            &format!("/api/Products/{id}?d=Mon%20Nov%2023%202026"),
            None,
        );
        self.api("GET", &format!("/rest/products/{id}/reviews"), None);
    }

    fn login(&mut self) {
        let password = *self.rng.pick(PASSWORDS);
        let body = format!(
            "{{\"email\":{},\"password\":{}}}",
            json_str(&self.email),
            json_str(password)
        );
        self.api("POST", "/rest/user/login", Some(&body));
        // A JWT (RS256): header.payload.signature, base64url.
        let payload = self.rng.token(BASE64URL, 180);
        let sig = self.rng.token(BASE64URL, 342);
        self.token = Some(format!(
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{payload}.{sig}"
        ));
        self.api("GET", "/rest/user/whoami", None);
        self.api("GET", &format!("/rest/basket/{}", self.basket), None);
        self.api("POST", "/rest/saveLoginIp", None);
    }

    fn register(&mut self) {
        let password = *self.rng.pick(PASSWORDS);
        let answer = format!("{} {}", self.rng.pick(FIRST), self.rng.pick(LAST));
        let body = format!(
            "{{\"email\":{},\"password\":{p},\"passwordRepeat\":{p},\"securityQuestion\":{{\"id\":2,\"question\":\"Mother's maiden name?\",\"createdAt\":\"2026-11-20T10:00:00.000Z\",\"updatedAt\":\"2026-11-20T10:00:00.000Z\"}},\"securityAnswer\":{}}}",
            json_str(&self.email),
            json_str(&answer),
            p = json_str(password),
        );
        self.api("POST", "/api/Users/", Some(&body));
        let answer_body = format!(
            "{{\"UserId\":{},\"answer\":{},\"SecurityQuestionId\":2}}",
            20 + self.rng.below(500),
            json_str(&answer)
        );
        self.api("POST", "/api/SecurityAnswers/", Some(&answer_body));
    }

    fn basket(&mut self) {
        let (product, _) = *self.rng.pick(PRODUCTS);
        let item = 10 + self.rng.below(900);
        self.api(
            "POST",
            "/api/BasketItems/",
            Some(&format!(
                "{{\"ProductId\":{product},\"BasketId\":\"{}\",\"quantity\":1}}",
                self.basket
            )),
        );
        let quantity = 2 + self.rng.below(4);
        self.api(
            "PUT",
            &format!("/api/BasketItems/{item}"),
            Some(&format!("{{\"quantity\":{quantity}}}")),
        );
        if self.rng.chance(50) {
            self.api("DELETE", &format!("/api/BasketItems/{item}"), None);
        }
        self.api("GET", &format!("/rest/basket/{}", self.basket), None);
    }

    fn review(&mut self) {
        let (id, _) = *self.rng.pick(PRODUCTS);
        let text = *self.rng.pick(REVIEWS);
        let body = format!(
            "{{\"message\":{},\"author\":{}}}",
            json_str(text),
            json_str(&self.email)
        );
        self.api("PUT", &format!("/rest/products/{id}/reviews"), Some(&body));
        self.api("GET", &format!("/rest/products/{id}/reviews"), None);
        if self.rng.chance(30) {
            let edited = format!("{} (edit: still true)", self.rng.pick(REVIEWS));
            let rid = self.rng.token(b"0123456789abcdef", 24);
            let body = format!("{{\"id\":\"{rid}\",\"message\":{}}}", json_str(&edited));
            self.api("PATCH", "/rest/products/reviews", Some(&body));
        }
        if self.rng.chance(30) {
            let rid = self.rng.token(b"0123456789abcdef", 24);
            self.api(
                "POST",
                "/rest/products/reviews",
                Some(&format!("{{\"id\":\"{rid}\"}}")),
            );
        }
    }

    fn feedback(&mut self) {
        self.api("GET", "/rest/captcha/", None);
        let comment = format!("{} ({})", self.rng.pick(FEEDBACK), self.email);
        let body = format!(
            "{{\"UserId\":{},\"captchaId\":{},\"captcha\":\"{}\",\"comment\":{},\"rating\":{}}}",
            20 + self.rng.below(500),
            self.rng.below(40),
            self.rng.below(100),
            json_str(&comment),
            1 + self.rng.below(5)
        );
        self.api("POST", "/api/Feedbacks/", Some(&body));
    }

    fn address_and_checkout(&mut self) {
        let name = format!("{} {}", self.rng.pick(FIRST), self.rng.pick(LAST));
        let street = *self.rng.pick(STREETS);
        let body = format!(
            "{{\"country\":\"Deutschland\",\"fullName\":{},\"mobileNum\":{},\"zipCode\":\"{}\",\"streetAddress\":{},\"city\":\"München\",\"state\":\"Bayern\"}}",
            json_str(&name),
            1_500_000_000u64 + self.rng.below(99_999_999) as u64,
            10_000 + self.rng.below(89_999),
            json_str(street)
        );
        self.api("GET", "/api/Addresss", None);
        self.api("POST", "/api/Addresss/", Some(&body));
        self.api("GET", "/api/Deliverys", None);
        self.api("GET", "/api/Cards", None);
        let card = format!(
            "{{\"fullName\":{},\"cardNum\":4{:015},\"expMonth\":{},\"expYear\":{}}}",
            json_str(&name),
            self.rng.next() % 1_000_000_000_000_000,
            1 + self.rng.below(12),
            2027 + self.rng.below(10)
        );
        self.api("POST", "/api/Cards/", Some(&card));
        let body = format!(
            "{{\"couponData\":\"bnVsbA==\",\"orderDetails\":{{\"paymentId\":\"{}\",\"addressId\":\"{}\",\"deliveryMethodId\":\"{}\"}}}}",
            1 + self.rng.below(30),
            1 + self.rng.below(30),
            1 + self.rng.below(3)
        );
        self.api(
            "POST",
            &format!("/rest/basket/{}/checkout", self.basket),
            Some(&body),
        );
        let order = format!(
            "{}-{}",
            self.rng.token(b"0123456789abcdef", 4),
            self.rng.token(b"0123456789abcdef", 16)
        );
        self.api("GET", &format!("/rest/track-order/{order}"), None);
        self.api("GET", "/rest/order-history", None);
    }

    fn complaint_upload(&mut self) {
        let mut pdf =
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
                .to_vec();
        for _ in 0..64 {
            pdf.push((self.rng.next() & 0xff) as u8);
        }
        pdf.extend_from_slice(b"\n%%EOF\n");
        let boundary = format!("----WebKitFormBoundary{}", self.rng.token(ALNUM, 16));
        let r = Request::new("POST", "/file-upload")
            .header("User-Agent", self.ua)
            .header("Accept", "application/json, text/plain, */*")
            .header("Origin", "http://shop.example")
            .header("Cookie", &self.cookies())
            .multipart(
                &[],
                (
                    "file",
                    "Invoice #2026-11 (copy).pdf",
                    "application/pdf",
                    &pdf,
                ),
                &boundary,
            );
        self.out.push(r);
        let body = format!(
            "{{\"UserId\":{},\"message\":{},\"file\":\"Invoice #2026-11 (copy).pdf\"}}",
            20 + self.rng.below(500),
            json_str("The bottle arrived broken, see the attached invoice & photo.")
        );
        self.api("POST", "/api/Complaints/", Some(&body));
    }

    fn profile_image(&mut self) {
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
        jpeg.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        for _ in 0..256 {
            jpeg.push((self.rng.next() & 0xff) as u8);
        }
        jpeg.extend_from_slice(&[0xff, 0xd9]);
        let boundary = format!(
            "----geckoformboundary{}",
            self.rng.token(b"0123456789abcdef", 24)
        );
        let r = Request::new("POST", "/profile/image/file")
            .header("User-Agent", self.ua)
            .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .header("Origin", "http://shop.example")
            .header("Cookie", &self.cookies())
            .multipart(
                &[],
                ("file", "me at the beach 😎.jpg", "image/jpeg", &jpeg),
                &boundary,
            );
        self.out.push(r);
        self.page("/profile", "text/html,*/*;q=0.8");
    }

    fn profile_image_url(&mut self) {
        let r = Request::new("POST", "/profile/image/url")
            .header("User-Agent", self.ua)
            .header("Accept", "text/html,*/*;q=0.8")
            .header("Origin", "http://shop.example")
            .header("Cookie", &self.cookies())
            .form("imageUrl=https%3A%2F%2Fimages.example.org%2Favatars%2Fme.png");
        self.out.push(r);
    }

    fn chatbot(&mut self) {
        self.api("GET", "/rest/chatbot/status", None);
        for _ in 0..1 + self.rng.below(3) {
            let q = *self.rng.pick(CHATBOT);
            let body = format!("{{\"action\":\"query\",\"query\":{}}}", json_str(q));
            self.api("POST", "/rest/chatbot/respond", Some(&body));
        }
    }

    fn account(&mut self) {
        self.api("GET", "/rest/wallet/balance", None);
        if self.rng.chance(40) {
            let body = format!(
                "{{\"balance\":{},\"paymentId\":\"{}\"}}",
                10 * (1 + self.rng.below(10)),
                1 + self.rng.below(30)
            );
            self.api("PUT", "/rest/wallet/balance", Some(&body));
        }
        self.api("GET", "/rest/2fa/status", None);
        self.api("GET", "/rest/deluxe-membership", None);
        self.api("GET", "/rest/memories", None);
        if self.rng.chance(25) {
            let old = *self.rng.pick(PASSWORDS);
            let new = *self.rng.pick(PASSWORDS);
            self.api(
                "GET",
                &format!(
                    "/rest/user/change-password?current={}&new={n}&repeat={n}",
                    encode(old),
                    n = encode(new)
                ),
                None,
            );
        }
        if self.rng.chance(20) {
            self.api(
                "POST",
                "/rest/user/data-export",
                Some("{\"format\":\"1\",\"answer\":\"\"}"),
            );
        }
    }

    fn recycle(&mut self) {
        let body = format!(
            "{{\"UserId\":{},\"quantity\":{},\"AddressId\":{},\"isPickup\":true,\"date\":\"2026-12-0{}\"}}",
            20 + self.rng.below(500),
            500 * (1 + self.rng.below(4)),
            1 + self.rng.below(30),
            1 + self.rng.below(9)
        );
        self.api("POST", "/api/Recycles/", Some(&body));
    }

    fn static_pages(&mut self) {
        for p in [
            "/ftp/legal.md",
            "/assets/public/images/carousel/1.jpg",
            "/rest/country-mapping",
            "/redirect?to=https://github.com/juice-shop/juice-shop",
        ] {
            if self.rng.chance(40) {
                self.page(p, "*/*");
            }
        }
        let lang = self.rng.pick(LANGUAGES).0;
        self.page(&format!("/assets/i18n/{lang}.json"), "application/json");
    }
}

/// A browser user's session: the landing page, then a seeded mix of shop actions.
pub fn browser_session(rng: &mut Rng, n: usize) -> Vec<Request> {
    let ua = BROWSERS[n % BROWSERS.len()];
    let lang = *rng.pick(LANGUAGES);
    let first = rng.pick(FIRST).to_lowercase();
    let email = format!(
        "{first}.{}{}@juice-sh.op",
        rng.token(b"abcdefghijklmnopqrstuvwxyz", 5),
        n
    );
    let sid = rng.token(BASE64URL, 20);
    let basket = 6 + n as u32;
    let mut sub = Rng::new(rng.next());
    let mut b = Browser {
        rng: &mut sub,
        ua,
        lang,
        email,
        token: None,
        basket,
        sid,
        out: Vec::new(),
    };
    b.landing();
    if b.rng.chance(25) {
        b.register();
    }
    b.login();
    // Everyone searches, looks at products and fills a basket; many write a review; a few
    // write one for everything they bought; the rest varies.
    b.search();
    b.view_product();
    b.basket();
    let reviews = if n % 15 == 7 {
        5
    } else {
        usize::from(b.rng.chance(40))
    };
    for _ in 0..reviews {
        b.review();
    }
    for _ in 0..3 + b.rng.below(4) {
        match b.rng.below(13) {
            0 => b.search(),
            1 => b.view_product(),
            2 => b.basket(),
            3 => b.review(),
            4 => b.feedback(),
            5 => b.address_and_checkout(),
            6 => b.complaint_upload(),
            7 => b.profile_image(),
            8 => b.profile_image_url(),
            9 => b.chatbot(),
            10 => b.account(),
            11 => b.recycle(),
            _ => b.static_pages(),
        }
    }
    if b.rng.chance(50) {
        b.socket_io();
    }
    b.out
}

/// An integration script using the JSON API with a token: GET, POST, PUT, PATCH, DELETE.
pub fn api_client(rng: &mut Rng, n: usize) -> Vec<Request> {
    let ua = API_CLIENTS[n % API_CLIENTS.len()];
    let token = format!(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{}.{}",
        rng.token(BASE64URL, 180),
        rng.token(BASE64URL, 342)
    );
    let req = |method: &str, target: &str, body: Option<&str>| {
        let r = Request::new(method, target)
            .header("User-Agent", ua)
            .header("Accept", "application/json")
            .header("Authorization", &format!("Bearer {token}"));
        match body {
            Some(b) => r.json(b),
            None => r,
        }
    };
    let mut out = Vec::new();
    out.push(req("GET", "/api/Products", None));
    out.push(req("GET", "/api/Quantitys/", None));
    for _ in 0..6 + rng.below(6) {
        let (id, _) = *rng.pick(PRODUCTS);
        let q = 10 + rng.below(200);
        out.push(req("GET", &format!("/api/Products/{id}"), None));
        out.push(req(
            "PUT",
            &format!("/api/Quantitys/{id}"),
            Some(&format!("{{\"quantity\":{q}}}")),
        ));
        if rng.chance(30) {
            out.push(req(
                "PATCH",
                &format!("/api/Products/{id}"),
                Some(&format!(
                    "{{\"description\":{}}}",
                    json_str("Now with 20% more fruit! (limited edition; while stocks last)")
                )),
            ));
        }
    }
    let order = format!(
        "{{\"cid\":\"JS0815DE\",\"orderLinesData\":{}}}",
        json_str(&format!(
            "[{{\"productId\": {},\"quantity\": {},\"customerReference\": [\"PO0000001.2\", \"SM20261105|042\"],\"couponCode\": \"pes[Bh.u*t\"}}]",
            rng.pick(PRODUCTS).0,
            1 + rng.below(50)
        ))
    );
    out.push(req("POST", "/b2b/v2/orders", Some(&order)));
    out.push(req(
        "DELETE",
        &format!("/api/BasketItems/{}", 100 + rng.below(900)),
        None,
    ));
    out.push(req("GET", "/rest/order-history/orders", None));
    out
}

/// A search-engine or link-preview crawler.
pub fn crawler(rng: &mut Rng, n: usize) -> Vec<Request> {
    let ua = CRAWLERS[n % CRAWLERS.len()];
    let get = |target: &str| {
        Request::new("GET", target)
            .header("User-Agent", ua)
            .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .header("Accept-Encoding", "gzip")
    };
    let mut out = vec![
        get("/robots.txt"),
        get("/sitemap.xml"),
        get("/"),
        get("/ftp/legal.md"),
    ];
    for _ in 0..8 {
        let (id, img) = *rng.pick(PRODUCTS);
        out.push(get(&format!("/api/Products/{id}")));
        out.push(get(&format!("/assets/public/images/products/{img}")));
    }
    out
}
