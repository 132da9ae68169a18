#!/usr/bin/env python3
"""Generate the lightning_albert demo data set (customer-support routing).

Every message is composed here from hand-written templates and slot fillers;
no third-party text is used. Standard library only, fully deterministic:
re-running the script rewrites byte-identical CSV files next to it.

    python3 data/demo/make_demo_data.py
"""

import csv
import random
import re
import sys
from pathlib import Path

SEED = 42
OUT_DIR = Path(__file__).resolve().parent
LABELS = ["billing", "delivery", "returns", "technical"]
# Rows per split and class (about 32 / 28 / 22 / 18 %).
SPLIT_COUNTS = {
    "train": {"billing": 192, "delivery": 168, "returns": 132, "technical": 108},
    "validation": {"billing": 48, "delivery": 42, "returns": 33, "technical": 27},
    "test": {"billing": 48, "delivery": 42, "returns": 33, "technical": 27},
}
AMBIGUOUS_FRACTION = 0.05  # share of each class drawn from ambiguous templates
HELDOUT_TEMPLATES_PER_CLASS = 3  # templates used only in validation/test
HELDOUT_SHARE_OF_EVAL = 0.25  # share of validation/test rows from those templates
MIN_WORDS, MAX_WORDS = 5, 30

# ---------------------------------------------------------------------------
# Slot fillers
# ---------------------------------------------------------------------------
PRODUCTS = [
    "wireless headphones", "running shoes", "coffee grinder", "yoga mat",
    "phone case", "desk lamp", "winter jacket", "blender", "bluetooth speaker",
    "backpack", "smartwatch", "kids raincoat", "linen shirt", "crème brûlée torch",
    "café table", "air fryer", "gaming mouse", "e-reader", "throw pillow",
    "sneakers", "jeans", "water bottle", "espresso cups", "mechanical keyboard",
    "duvet cover", "hiking boots", "baby monitor", "electric toothbrush",
    "wool scarf", "garden hose", "standing desk", "rice cooker", "sunglasses",
    "piñata kit", "office chair", "denim jacket", "kettle", "webcam",
]
NAMES = [
    "José", "Zoë", "Chloé", "Björn", "Søren", "Anaïs", "François", "Łukasz",
    "Priya", "Mei", "Ahmed", "Olivia", "Tom", "Kateřina", "Renée", "Noah",
    "Inês", "Dara", "Sam", "Müller", "Aoife", "Emre", "Nadia", "Raúl",
]
DAYS = [
    "yesterday", "last week", "on Monday", "on Tuesday", "last Wednesday",
    "on Thursday", "last Friday", "on Saturday", "two days ago",
    "three days ago", "on the 12th", "on the 3rd", "this morning",
    "over the weekend", "on the 21st", "last month",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
COUNTRIES = [
    "Ireland", "Portugal", "Norway", "Canada", "Switzerland", "Poland",
    "Iceland", "Japan", "México", "Austria", "Türkiye", "Réunion",
]
COURIERS = ["the courier", "ParcelGo", "SwiftShip", "the driver", "the post office", "QuickDrop"]
PAYMENTS = ["credit card", "debit card", "PayPal", "gift card", "bank account", "Visa card", "Mastercard"]
DEVICES = ["iPhone", "Android phone", "iPad", "Samsung tablet", "Pixel", "laptop", "Huawei phone"]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge", "Opera"]
ERRCODES = ["500", "403", "E-1042", "ERR_TIMEOUT", "502", "code 17", "E-208"]
CODES = ["SPRING20", "WELCOME10", "VIP15", "FREESHIP", "SUMMER25", "HELLO5"]
LANGUAGES = ["French", "German", "Spanish", "Polish", "Portuguese", "Dutch"]

OPENINGS = [
    ("", 30), ("Hi,", 12), ("Hello,", 8), ("hello", 4), ("Hi there,", 5),
    ("Hey,", 4), ("Quick question:", 5), ("Good morning,", 3),
    ("Good evening,", 2), ("Hi team,", 4), ("Dear support,", 3),
    ("Hello support team,", 2), ("Urgent:", 2), ("Sorry to bother you,", 2),
    ("Hi, {name} here.", 3), ("This is {name}.", 2), ("Help!", 1),
]
CLOSINGS = [
    ("", 40), ("Thanks!", 8), ("thanks", 4), ("Thank you.", 5), ("Thx", 2),
    ("Cheers, {name}", 3), ("Regards, {name}", 3), ("Please help.", 3),
    ("Many thanks, {name}", 2), ("Thanks in advance.", 3),
    ("Let me know asap.", 2), ("Appreciate it!", 2), ("- {name}", 2),
]
EMOJIS = ["🙏", "😕", "😡", "🙂", "📦", "😩", "👍", "🤔", "😤", "🙃"]
MISSPELLINGS = {
    "received": "recieved", "address": "adress", "tomorrow": "tommorow",
    "please": "pls", "definitely": "definately", "separate": "seperate",
    "because": "becuase", "package": "pakage", "really": "realy",
    "which": "wich", "until": "untill", "account": "acount",
    "delivered": "deliverd", "refund": "refnd", "password": "pasword",
}

# ---------------------------------------------------------------------------
# Templates. "[a|b|c]" picks one alternative; "{slot}" is filled from above.
# ---------------------------------------------------------------------------
TEMPLATES = {
    "billing": [
        "I was charged twice for order {order}, can you refund one of the payments?",
        "My {payment} was billed {amount} but the order total was only {amount2}.",
        "Can I get an invoice with my company VAT number for order {order}?",
        "The promo code {code} was accepted but the discount is not on my [statement|receipt].",
        "Why is there a pending charge of {amount} on my {payment} when I cancelled the order?",
        "How do I change the payment method on my subscription?",
        "I need a receipt for the {product} I bought {day}, it's for my expenses.",
        "My {payment} payment failed but the money still left my account.",
        "Do you offer [instalments|pay later|monthly payments] for orders over {amount}?",
        "The invoice for order {order} shows the wrong billing address, can you [fix|correct] it?",
        "I was charged a shipping fee of {amount} even though my order qualified for free shipping.",
        "Could you explain the extra {amount} fee on my last [bill|statement]?",
        "My gift card balance was not applied to order {order}, I paid the full {amount}.",
        "I'd like to update the card you have on file, it expires this month.",
        "Please cancel my membership renewal, I got charged {amount} {day}.",
        "You charged me in dollars instead of euros and the conversion cost me {amount}.",
        "The refund for order {order} was approved {day} but it hasn't reached my {payment} yet.",
        "Is VAT included in the {amount} price of the {product}?",
        "[Could|Can] you send me a copy of the invoice for the {product}?",
        "My bank flagged a payment of {amount} to your shop as suspicious, was that really you?",
        "I was charged {amount} for the {product} but I never placed that order.",
        "Can I split the payment for order {order} between two cards?",
        "The {product} dropped to {amount} the day after I bought it, can you credit me the difference?",
        "I used a student discount but was still billed the full {amount}.",
        "I noticed two identical charges from you on my statement {day}.",
        "Do you accept {payment} for business accounts, and can you invoice us monthly?",
        "My store credit of {amount} has vanished from my account balance.",
        "Can you confirm the payment for order {order} went through? My bank shows it as pending.",
        "I was overcharged by {amount} on order {order}, the price on the site was lower.",
        "Please stop charging my {payment}, I closed my account {day}.",
        "The total on my receipt for order {order} does not match what my bank took.",
        "Why did you take a {amount} deposit from my card before the {product} even shipped?",
        "How long does a refund to a {payment} usually take to show up?",
        # short ones
        "Invoice for order {order} please.",
        "Why was I charged twice??",
        "Need a VAT receipt for my last order.",
        # billing messages that borrow other teams' vocabulary
        "I returned the {product} {day} and the refund came back {amount} short.",
        "The courier asked me for a {amount} cash on delivery fee, was that correct?",
        "The app showed {amount} at checkout but my card was charged {amount2}.",
        "Your website took my payment twice when the page reloaded, please refund one of them.",
        "I was charged for delivery on order {order} even though I collected it in store.",
        "I sent the {product} back but you charged my {payment} again instead of refunding it.",
        "I cancelled order {order} before it shipped, when will the money be back on my card?",
        "The parcel was returned to sender and I still haven't been refunded the {amount}.",
        "My account shows an unpaid balance of {amount} but I paid for the order in the app.",
        "The {product} was delivered {day} but you took the payment a second time.",
        "Why was I charged {amount} for a return label? I thought returns were free.",
        "I ordered the {product} in the app and got billed in the wrong currency.",
    ],
    "delivery": [
        "Where is my order {order}? It was supposed to arrive {day}.",
        "Tracking for order {order} hasn't updated in {n} days.",
        "{courier_cap} says my parcel was delivered but there is nothing at my door.",
        "Can I change the delivery address for order {order}? I [just moved|am staying with family].",
        "My parcel was left with a neighbour and I have no idea which one.",
        "Do you ship to {country}, and how long does delivery take?",
        "The {product} arrived fine but the box was completely crushed, just letting you know.",
        "Only part of order {order} arrived, the {product} is missing from the parcel.",
        "Can you deliver on {weekday} instead? I won't be home before then.",
        "The driver didn't ring the bell and left a card, how do I rebook the delivery?",
        "Is express shipping available for the {product}?",
        "My order shipped {day} but the tracking number says not found.",
        "The delivery estimate for order {order} keeps moving, now it says {weekday}.",
        "Can I pick up my order from a parcel locker instead of home delivery?",
        "I was out when {courier} came, can they try again tomorrow?",
        "Parcel {order} is stuck at customs, what do I need to do?",
        "Why did my order ship in three separate boxes on different days?",
        "It has been two weeks and order {order} still says processing.",
        "The tracking page says my parcel is being returned to sender, why?",
        "Please hold my parcel at the depot, I'm away until {weekday}.",
        "The {product} I ordered {day} still hasn't been dispatched.",
        "Can the courier call me before delivery? Our building has no doorbell.",
        "{courier_cap} marked order {order} as undeliverable but the address is correct.",
        "Do you deliver on weekends to {country}?",
        "My parcel went to my old address, what can I do now?",
        "I need the {product} by {weekday} for a birthday, will it arrive in time?",
        "{courier_cap} seems to have lost my package, no updates for {n} days.",
        "A parcel addressed to someone else was delivered to me, what should I do with it?",
        "Can I add a safe place note for the driver on order {order}?",
        "How long does standard delivery to {country} usually take?",
        "My order {order} was marked as shipped {day} but nothing has moved since.",
        "The delivery slot I picked {day} was missed and nobody came.",
        "Is it possible to upgrade order {order} to next day delivery?",
        # short ones
        "Any update on order {order}?",
        "where is my parcel??",
        "Still waiting for my {product}.",
        # delivery messages that borrow other teams' vocabulary
        "The app has shown my parcel as out for delivery since {weekday} but it never came.",
        "I paid for next day delivery on order {order} and it still hasn't arrived.",
        "The replacement {product} you promised me {day} hasn't been shipped yet.",
        "I got an email saying order {order} was delivered but I'm still waiting for the box.",
        "The website says my order is on its way but the courier has no record of it.",
        "Can you send the {product} to my office instead? I already paid for order {order}.",
        "I paid {amount} for shipping and the parcel is still sitting at the depot.",
        "The app says order {order} was sent back to you, but I never refused the parcel.",
        "My account says delivered {day} but the parcel is not in my mailbox.",
        "Your website promised free delivery by {weekday} and my order hasn't even left the warehouse.",
        "The order number {order} on my invoice doesn't show up in the courier's tracking.",
        "The {product} I bought as a gift still hasn't arrived, the app just says pending.",
    ],
    "returns": [
        "I'd like to return the {product}, it [doesn't fit|is too big|is too small].",
        "How do I get a return label for order {order}?",
        "The {product} arrived broken, can I exchange it for a new one?",
        "Is the return window 30 days or 14 days for the {product}?",
        "I sent the {product} back {day} but haven't heard anything since.",
        "Can I exchange the {product} for a different [size|colour|model]?",
        "I ordered the {product} but received something completely different, I want to send it back.",
        "Do I have to pay for return shipping on the {product}?",
        "The {product} stopped working after a week, can I return it under warranty?",
        "Can I return an item I bought in the sale?",
        "I threw away the original packaging, can I still send the {product} back?",
        "I want to return just the {product} from order {order}, not the whole order.",
        "Can I drop my return off with {courier} instead of posting it?",
        "The {product} looks nothing like the photos, I want to send it back.",
        "My return request for order {order} was rejected, why?",
        "You sent me the {product} twice by mistake, how do I send one back?",
        "Can I swap the {product} for store credit instead of getting my money back?",
        "My return label has expired, could you send me a new one?",
        "The {product} had a scratch on it straight out of the box, I'd like a replacement.",
        "The {product} was a gift, can I return it without a receipt?",
        "Does the {product} need to be unopened to be returned?",
        "The replacement {product} you sent me is also faulty.",
        "Can I return something I bought in your physical store through the website?",
        "I changed my mind about the {product}, what is your return policy?",
        "The {product} has a strange smell, I would like to return it.",
        "My return for order {order} reached your warehouse {day} but there has been no update.",
        "Can you arrange a collection for the {product}? It's too heavy to take to the post office.",
        "The size guide was wrong, the {product} is way too small, can I swap it?",
        "What condition does the {product} need to be in for a return?",
        "Can I return the {product} after 30 days if it was never used?",
        "Where do I find the returns form for order {order}?",
        "The {product} is defective, do you want photos before I send it back?",
        # short ones
        "How do I return something?",
        "Need a return label please.",
        "Want to send back the {product}.",
        # returns messages that borrow other teams' vocabulary
        "Can I still return the {product} if I paid with a {payment}?",
        "The {product} was delivered {day} but it's the wrong colour, can I send it back?",
        "Will I get the {amount} shipping cost back if I return the {product}?",
        "The {product} won't switch on straight out of the box, I want to send it back for a new one.",
        "The courier is picking up my return {day}, does the {product} need the original box?",
        "I paid {amount} for the {product} and it's not what I expected, can I send it back for a refund?",
        "The app says my refund is pending until you receive the {product}, where do I send it?",
        "Can I send back the {product} from order {order} and get the money on my {payment}?",
        "The courier delivered a damaged {product} {day}, how do I return it?",
        "Your website says free returns, but how do I actually send the {product} back?",
        "I logged into my account but can't see where to start a return for order {order}.",
        "Is there a fee to return the {product}, or is it free?",
    ],
    "technical": [
        "I can't log in to my account, it keeps saying my password is wrong.",
        "The app crashes every time I open my basket on my {device}.",
        "The password reset email never arrives, I have checked spam.",
        "The checkout page freezes after I [enter|type in] my card details.",
        "The promo code box gives an error '{errcode}' every time I type anything.",
        "Your website is extremely slow on {browser} today.",
        "I can't upload a photo to my review of the {product}.",
        "How do I turn on two-factor authentication for my account?",
        "The app keeps logging me out every few minutes.",
        "I get error {errcode} when I try to view my order history.",
        "The search bar returns nothing, not even for '{product}'.",
        "Notifications from the app are not showing up on my {device}.",
        "I can't find how to delete my account in the settings page.",
        "The add to basket button does nothing on {browser}.",
        "My wishlist disappeared after the last app update.",
        "Pictures on the product pages don't load on my {device}.",
        "I'm not receiving the verification code by SMS.",
        "The site shows everything in {language} even though I chose English.",
        "Your sign up form won't accept my email address because it has a plus sign in it.",
        "After updating the app to version {version} it won't open at all.",
        "I keep getting a blank white screen on the payment step in {browser}.",
        "How do I change the email address linked to my account?",
        "The tracking link in the app gives a 404 error.",
        "Dark mode makes the text unreadable on my {device}.",
        "The Apple Pay button is missing at checkout on my {device}.",
        "My account got locked after too many login attempts.",
        "The sign in with Google option vanished from the login page.",
        "The size filter doesn't work on the shoes page, it shows every size.",
        "The app says 'something went wrong' whenever I open my orders on my {device}.",
        "I can't scan the QR code on the return label, the app camera just shows black.",
        "The page keeps reloading when I try to save my new address in my profile.",
        "Is there a problem with the website? I get error {errcode} on every page.",
        # short ones
        "App won't open on my {device}.",
        "Can't log in again, help.",
        "Is your website down right now?",
        # technical messages that borrow other teams' vocabulary
        "The refund button in the app does nothing when I tap it.",
        "I can't edit my delivery address in the app, the field stays empty.",
        "The order tracking page won't load on my {device}.",
        "My card details won't save in my account, the page just keeps spinning.",
        "The returns page on your website gives error {errcode}.",
        "The app shows a different price for the {product} than the website does.",
        "I can't pay with my {payment}, the checkout page shows error {errcode}.",
        "The order confirmation email never arrived, but the app says the order went through.",
        "The delivery date picker on the website won't let me select any day.",
        "I can't log in to check my refund status, the page keeps timing out.",
        "The courier map in the app is just blank on my {device}.",
        "When I try to start a return in the app it crashes on my {device}.",
    ],
}

# Ambiguous messages: each lists every label that could defensibly handle it.
# A row drawn from one of these receives one of its listed labels.
AMBIGUOUS = [
    (
        "I paid {amount} for express shipping on order {order} and it still came late, can I get that back?",
        ["billing", "delivery"],
    ),
    ("Order {order} never arrived and I just want my money back.", ["delivery", "billing"]),
    ("The {product} came in a crushed box and is dented, what happens now?", ["delivery", "returns"]),
    ("The refund for the {product} I sent back {day} still hasn't shown up.", ["returns", "billing"]),
    ("The app froze at checkout and now I see two charges of {amount}.", ["technical", "billing"]),
    ("I can't print my return label, the page just shows an error.", ["returns", "technical"]),
    ("The tracking link in your email is broken, so where is my parcel?", ["delivery", "technical"]),
    ("A parcel for someone else came to me and I was charged {amount} for it.", ["delivery", "billing"]),
    ("The wrong {product} arrived and {courier} refused to take it back.", ["returns", "delivery"]),
    ("My discount code {code} didn't work so I paid full price, please sort it out.", ["billing", "technical"]),
    ("Order {order} disappeared from my account right after I paid.", ["technical", "billing"]),
    ("The {product} never arrived and the return I opened for it shows as cancelled.", ["delivery", "returns"]),
    ("I was charged a restocking fee of {amount} when I returned the {product}.", ["billing", "returns"]),
    (
        "The app says order {order} is delivered but I never got it, and I can't open the help page.",
        ["delivery", "technical"],
    ),
    ("Half of my order {order} is missing and I'd rather have a refund than wait.", ["delivery", "returns", "billing"]),
    (
        "The {product} stopped charging after a week, is that a fault or am I doing something wrong?",
        ["returns", "technical"],
    ),
]


def _rand_amount(rng):
    value = rng.choice([rng.randint(5, 60), rng.randint(60, 400)])
    cents = rng.choice(["", ".99", ".50", ".00", ".95", ".49"])
    cur = rng.choice(["€", "$", "£", "EUR", "€"])
    if cur == "EUR":
        return f"{value}{cents} EUR"
    if cur == "€" and cents and rng.random() < 0.4:
        return f"{value},{cents[1:]} €"
    return f"{cur}{value}{cents}"


def _rand_order(rng):
    digits = str(rng.randint(10000, 99999999))
    style = rng.randrange(4)
    if style == 0:
        return "#" + digits
    if style == 1:
        return digits
    if style == 2:
        return "SO-" + digits[:6]
    return "no. " + digits


def _slots(rng):
    courier = rng.choice(COURIERS)
    amount = _rand_amount(rng)
    amount2 = _rand_amount(rng)
    while amount2 == amount:
        amount2 = _rand_amount(rng)
    return {
        "product": rng.choice(PRODUCTS),
        "name": rng.choice(NAMES),
        "day": rng.choice(DAYS),
        "weekday": rng.choice(WEEKDAYS),
        "country": rng.choice(COUNTRIES),
        "courier": courier,
        "courier_cap": courier[0].upper() + courier[1:],
        "payment": rng.choice(PAYMENTS),
        "device": rng.choice(DEVICES),
        "browser": rng.choice(BROWSERS),
        "errcode": rng.choice(ERRCODES),
        "code": rng.choice(CODES),
        "language": rng.choice(LANGUAGES),
        "version": f"{rng.randint(3, 7)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
        "order": _rand_order(rng),
        "amount": amount,
        "amount2": amount2,
        "n": str(rng.randint(3, 12)),
    }


_ALT = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")


def _weighted(rng, pairs):
    items = [p[0] for p in pairs]
    weights = [p[1] for p in pairs]
    return rng.choices(items, weights=weights, k=1)[0]


def _typo(rng, text):
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 4]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    lw = w.lower()
    if lw in MISSPELLINGS and rng.random() < 0.6:
        new = MISSPELLINGS[lw]
        w = new if w.islower() else new.capitalize()
    else:
        j = rng.randrange(1, len(w) - 1)
        kind = rng.randrange(3)
        if kind == 0:  # swap two letters
            w = w[:j] + w[j + 1] + w[j] + w[j + 2:]
        elif kind == 1:  # drop a letter
            w = w[:j] + w[j + 1:]
        else:  # double a letter
            w = w[:j] + w[j] + w[j:]
    words[i] = w
    return " ".join(words)


def compose(rng, template):
    slots = _slots(rng)
    body = _ALT.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    body = body.format(**slots)
    opening = _weighted(rng, OPENINGS).format(**slots)
    closing = _weighted(rng, CLOSINGS).format(**slots)
    # After "Hi," people write either "Hi, The ..." or "Hi, the ...";
    # never lower-case "I" or a leading name such as a courier.
    can_lower = not template.startswith("{") and body.split()[0] not in ("I", "I'd", "I'm")
    bare_opening = opening and not opening.endswith((":", ",", ".", "!"))  # e.g. "hello"
    comma_opening = opening.endswith(",") and rng.random() < 0.6
    if can_lower and (bare_opening or comma_opening):
        body = body[0].lower() + body[1:]
    if not closing and rng.random() < 0.15:  # drop final punctuation now and then
        body = body.rstrip(".!")
    text = " ".join(part for part in (opening, body, closing) if part)
    if rng.random() < 0.10:
        text = _typo(rng, text)
    if rng.random() < 0.03:
        text = _typo(rng, text)
    if rng.random() < 0.15:
        text = text.lower()
    if rng.random() < 0.07:
        text = text + " " + rng.choice(EMOJIS)
    return text


def generate():
    rng = random.Random(SEED)
    seen_exact = set()
    seen_folded = set()  # also avoid texts differing only by letter case

    def new_row(template, label):
        for _attempt in range(1000):
            text = compose(rng, template)
            if not (MIN_WORDS <= len(text.split()) <= MAX_WORDS):
                continue
            if text in seen_exact or text.casefold() in seen_folded:
                continue
            seen_exact.add(text)
            seen_folded.add(text.casefold())
            return (text, label)
        sys.exit(f"could not compose a new unique text for {label!r}: {template!r}")

    splits = {split: [] for split in SPLIT_COUNTS}
    for label in LABELS:
        n_train = SPLIT_COUNTS["train"][label]
        n_eval = sum(SPLIT_COUNTS[s][label] for s in SPLIT_COUNTS if s != "train")
        n_total = n_train + n_eval
        # A few templates never reach train, so evaluation also measures
        # generalisation to unseen phrasings rather than template recall.
        templates = list(TEMPLATES[label])
        held_idx = sorted(rng.sample(range(len(templates)), HELDOUT_TEMPLATES_PER_CLASS))
        held = [templates[k] for k in held_idx]
        seen = [t for k, t in enumerate(templates) if k not in held_idx]
        n_held = round(n_eval * HELDOUT_SHARE_OF_EVAL)
        n_amb = round(n_total * AMBIGUOUS_FRACTION)
        amb = [t for t, labs in AMBIGUOUS if label in labs]

        held_rows = [new_row(held[k % len(held)], label) for k in range(n_held)]
        regular = [new_row(amb[k % len(amb)], label) for k in range(n_amb)]
        # cycle through the seen templates so each is used about equally
        regular += [new_row(seen[k % len(seen)], label) for k in range(n_total - n_held - n_amb)]
        rng.shuffle(regular)
        splits["train"].extend(regular[:n_train])
        eval_rows = held_rows + regular[n_train:]
        rng.shuffle(eval_rows)
        start = 0
        for split in SPLIT_COUNTS:
            if split == "train":
                continue
            n = SPLIT_COUNTS[split][label]
            splits[split].extend(eval_rows[start:start + n])
            start += n
    for split in SPLIT_COUNTS:
        rng.shuffle(splits[split])
    return splits


def check(splits):
    seen = {}
    for split, rows in splits.items():
        for text, label in rows:
            if label not in LABELS:
                raise SystemExit(f"bad label {label!r} in {split}")
            n_words = len(text.split())
            if not (MIN_WORDS <= n_words <= MAX_WORDS):
                raise SystemExit(f"{split}: {n_words} words: {text!r}")
            if text in seen:
                raise SystemExit(f"duplicate text in {seen[text]} and {split}: {text!r}")
            seen[text] = split
        counts = {lab: sum(1 for _, label in rows if label == lab) for lab in LABELS}
        if counts != SPLIT_COUNTS[split]:
            raise SystemExit(f"{split}: counts {counts} != {SPLIT_COUNTS[split]}")


def write(splits):
    for split, rows in splits.items():
        path = OUT_DIR / f"{split}.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        # Read back to be sure quoting round-trips.
        with open(path, encoding="utf-8", newline="") as f:
            back = [tuple(r) for r in csv.reader(f)][1:]
        if back != [tuple(r) for r in rows]:
            raise SystemExit(f"{path}: CSV round-trip mismatch")
        counts = ", ".join(f"{lab}={sum(1 for _, label in rows if label == lab)}" for lab in LABELS)
        print(f"wrote {path} ({len(rows)} rows: {counts})")


def main():
    splits = generate()
    check(splits)
    write(splits)


if __name__ == "__main__":
    main()
